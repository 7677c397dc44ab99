"""The MFAS search space: fusion networks described by lists of triplets.

A description is a list of triplets `(m, n, p)` (1-based, as in the
paper): layer `l` of the fusion network concatenates feature `m` of the
first modality, feature `n` of the second one and the previous fusion
layer's output, and applies activation `p` (Eq. 1-2 of Perez-Rua et al.,
2019).
"""

import itertools
import json
import numbers

DEFAULT_ACTIVATIONS = ("relu", "sigmoid")


class SearchSpace:
    """The set of fusion descriptions for given unimodal feature counts.

    `Gamma_l` of the paper: every list of `1..max_layers` triplets
    `(m, n, p)` with `m` in `1..num_x_features`, `n` in
    `1..num_y_features` and `p` in `1..len(activations)`. Its size for
    exactly `L` layers is `(M * N * P) ** L`.

    Args:
        num_x_features: `M`, the number of candidate feature layers of the
            first unimodal network `f`.
        num_y_features: `N`, the same for the second network `g`.
        activations: the `P` activation names, in order (`p = 1` is the
            first). The paper uses ReLU and sigmoid (AV-MNIST) and adds
            leaky ReLU (MM-IMDB).
        max_layers: `L`, the maximum number of fusion layers.

    Example:

    >>> space = SearchSpace(5, 3, ("relu", "sigmoid"), max_layers=2)
    >>> len(space.layer_choices())
    30
    >>> space.validate([(5, 3, 1), (4, 1, 2)])
    ((5, 3, 1), (4, 1, 2))
    >>> space.from_json(space.to_json([(5, 3, 1)]))
    ((5, 3, 1),)

    Reference:
        Perez-Rua et al., "MFAS: Multimodal Fusion Architecture Search",
        CVPR 2019, section 3.1 (Eq. 1-2, search-space size).
    """

    def __init__(
        self,
        num_x_features,
        num_y_features,
        activations=DEFAULT_ACTIVATIONS,
        max_layers=4,
    ):
        for name, value in (
            ("num_x_features", num_x_features),
            ("num_y_features", num_y_features),
            ("max_layers", max_layers),
        ):
            if not _is_positive_int(value):
                raise ValueError(
                    f"SearchSpace expected `{name}` to be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        activations = tuple(activations)
        if not activations or not all(isinstance(a, str) for a in activations):
            raise ValueError(
                "SearchSpace expected `activations` to be a non-empty list of "
                f"activation names. Received: activations={activations!r}"
            )
        self.num_x_features = num_x_features
        self.num_y_features = num_y_features
        self.activations = activations
        self.max_layers = max_layers

    def layer_choices(self):
        """All triplets `(m, n, p)`, `Gamma_1` of the paper, in order."""
        return [
            (m, n, p)
            for m, n, p in itertools.product(
                range(1, self.num_x_features + 1),
                range(1, self.num_y_features + 1),
                range(1, len(self.activations) + 1),
            )
        ]

    def validate(self, description):
        """Checks a description and returns it as a tuple of int triplets.

        Raises:
            ValueError: naming the bad triplet, what it received and the
                valid ranges.
        """
        if isinstance(description, (str, bytes)) or not hasattr(description, "__len__"):
            raise ValueError(
                "SearchSpace expected a description: a list of (m, n, p) "
                f"triplets. Received: {description!r}"
            )
        if not 1 <= len(description) <= self.max_layers:
            raise ValueError(
                f"SearchSpace expected a description of 1 to {self.max_layers} "
                f"triplets. Received {len(description)}: {list(description)!r}"
            )
        out = []
        limits = (self.num_x_features, self.num_y_features, len(self.activations))
        for i, triplet in enumerate(description):
            if (
                isinstance(triplet, (str, bytes))
                or not hasattr(triplet, "__len__")
                or len(triplet) != 3
                or not all(_is_positive_int(v) for v in triplet)
                or any(v > top for v, top in zip(triplet, limits))
            ):
                raise ValueError(
                    f"SearchSpace expected triplet {i} to be (m, n, p) with "
                    f"1 <= m <= {limits[0]}, 1 <= n <= {limits[1]}, "
                    f"1 <= p <= {limits[2]}. Received: {triplet!r}"
                )
            out.append(tuple(int(v) for v in triplet))
        return tuple(out)

    def extend(self, descriptions):
        """`addLayer` of Algorithm 1: every description plus one more triplet.

        Descriptions already at `max_layers` are not extended.
        """
        choices = self.layer_choices()
        out = []
        for d in descriptions:
            d = self.validate(d)
            if len(d) < self.max_layers:
                out.extend(d + (t,) for t in choices)
        return out

    def random_description(self, rng):
        """A uniform number of layers in `1..L`, each triplet uniform."""
        choices = self.layer_choices()
        length = int(rng.integers(1, self.max_layers + 1))
        return tuple(choices[int(i)] for i in rng.integers(0, len(choices), length))

    def size(self, num_layers):
        """`(M * N * P) ** num_layers`."""
        return len(self.layer_choices()) ** num_layers

    def to_json(self, description):
        """A JSON string `[[m, n, p], ...]`."""
        return json.dumps([list(t) for t in self.validate(description)])

    def from_json(self, text):
        """The description a `to_json` string encodes (validated)."""
        try:
            value = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"SearchSpace could not read a description from JSON ({e}). "
                f"Received: {text!r}"
            ) from None
        return self.validate(value)

    def get_config(self):
        return {
            "num_x_features": self.num_x_features,
            "num_y_features": self.num_y_features,
            "activations": list(self.activations),
            "max_layers": self.max_layers,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _is_positive_int(value):
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= 1
    )
