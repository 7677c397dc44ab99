import keras
from keras import ops

from mmfusion_keras.losses.dcca import _check_ridge
from mmfusion_keras.losses.dcca import _check_top_k
from mmfusion_keras.losses.dcca import generalized_canonical_correlation
from mmfusion_keras.losses.dcca import multiview_canonical_correlation
from mmfusion_keras.losses.dcca import total_canonical_correlation


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class CanonicalCorrelationLoss(keras.layers.Layer):
    """Adds the (negative) Deep CCA correlation of 2 or 3 views to the loss.

    A pass-through layer for functional models: it returns its inputs
    unchanged and, when `training` is true, calls
    `add_loss(-weight * correlation)`, where `correlation` is the total
    canonical correlation of the views over the batch (Andrew et al. 2013;
    see `mmfusion_keras.losses.total_canonical_correlation`). With three
    views it is the sum over the three pairs
    (`multiview_canonical_correlation`, `multiview="pairwise"`, default) or
    one multiview CCA (`multiview="maxvar"`: generalized CCA in Carroll's
    MAXVAR form, `generalized_canonical_correlation`, which rewards one
    subspace shared by all views; for two views both equal the two-view
    DCCA value, up to the ridge). Put it after the modality encoders
    so `fit` maximizes their correlation alongside the task loss (Panchal,
    section 4.2), or train the encoders with it alone (a dummy zero output
    loss) for the paper's stage-wise recipe.

    Sequences `(batch, time, d)` are first mean-pooled over time (over the
    unmasked steps when a mask is given), so each sample contributes one
    row per view: CCA needs one observation per sample, and the views may
    have different lengths (unaligned modalities). This pooling is a
    choice: the paper does not say how the correlation of sequences is
    measured.

    Outside training (`evaluate`, `predict`) no loss is added. The layer
    has no weights.

    Args:
        top_k: number of canonical directions whose correlations are
            summed, a positive integer, or None for all of them.
        ridge: non-negative value added to the diagonals of the
            auto-covariances (stabilizes the inverse square roots).
        weight: non-negative factor of the added loss.
        multiview: "pairwise" (default; also what files saved before this
            option load as) or "maxvar", how 3 views are combined.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: list of 2 or 3 float tensors, each `(batch, d_i)` or
            `(batch, time_i, d_i)`, with the same batch size.
        mask: optional list (one entry per view, `None` allowed) of
            `(batch, time_i)` boolean masks, true at real steps. Keras
            masks carried by the inputs are picked up automatically.
        training: Python bool; the loss is added only when true.

    Returns:
        The list of inputs, unchanged (masks pass through too).

    Example:

    >>> import numpy as np
    >>> import keras
    >>> from mmfusion_keras.layers import CanonicalCorrelationLoss
    >>> a, v = keras.Input((7, 4)), keras.Input((5, 3))
    >>> ea = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(a))
    >>> ev = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(v))
    >>> ea, ev = CanonicalCorrelationLoss(top_k=2, weight=0.1)([ea, ev])
    >>> out = keras.layers.Dense(1)(keras.layers.Concatenate()([ea, ev]))
    >>> model = keras.Model([a, v], out)
    >>> model.compile(optimizer="adam", loss="mse")
    >>> x = [np.random.rand(16, 7, 4), np.random.rand(16, 5, 3)]
    >>> _ = model.fit(x, np.random.rand(16, 1), verbose=0)

    Reference:
        Andrew, Arora, Bilmes, Livescu. Deep Canonical Correlation
        Analysis. ICML 2013, section 2.2.
        Panchal. Hierarchical Delta-Attention Method for Multimodal Fusion,
        section 4.2 (DCCA among the L, V, A encoders).
    """

    min_views = 2
    max_views = 3

    def __init__(
        self, top_k=None, ridge=1e-3, weight=1.0, multiview="pairwise", **kwargs
    ):
        super().__init__(**kwargs)
        if multiview not in ("pairwise", "maxvar"):
            raise ValueError(
                f"Layer {self.__class__.__name__}: received an invalid value "
                "for argument `multiview`, expected one of ('pairwise', "
                f"'maxvar'). Received: multiview={multiview!r}"
            )
        self.multiview = multiview
        self.supports_masking = True
        _check_top_k(top_k, f"Layer {self.__class__.__name__}")
        _check_ridge(ridge, f"Layer {self.__class__.__name__}")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or weight < 0
        ):
            raise ValueError(
                f"Layer {self.__class__.__name__}: received an invalid value "
                "for argument `weight`, expected a non-negative number. "
                f"Received: weight={weight!r}"
            )
        self.top_k = top_k
        self.ridge = float(ridge)
        self.weight = float(weight)

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _validate_shapes(self, shapes):
        if not isinstance(shapes, (list, tuple)) or (
            len(shapes) > 0 and not isinstance(shapes[0], (list, tuple))
        ):
            raise ValueError(
                f"{self._describe()} expects a list of 2 or 3 view tensors. "
                f"Received a single tensor of shape {shapes}. Pass the views "
                "as a list, e.g. `layer([x_language, x_audio])`."
            )
        shapes = [tuple(None if d is None else int(d) for d in s) for s in shapes]
        if not self.min_views <= len(shapes) <= self.max_views:
            raise ValueError(
                f"{self._describe()} expects a list of 2 or 3 view tensors. "
                f"Received {len(shapes)} views with shapes {shapes}."
            )
        for i, s in enumerate(shapes):
            if len(s) not in (2, 3):
                raise ValueError(
                    f"{self._describe()} expects every view to have rank 2 "
                    "(batch, features) or 3 (batch, time, features). "
                    f"Received view {i} with rank {len(s)} and shape {s}."
                )
            if s[-1] is None:
                raise ValueError(
                    f"{self._describe()} needs the last dimension of every "
                    f"view to be known. Received view {i} with shape {s}."
                )
        batches = {s[0] for s in shapes if s[0] is not None}
        if len(batches) > 1:
            raise ValueError(
                f"{self._describe()} expects all views to have the same "
                f"batch size. Received batch sizes {[s[0] for s in shapes]} "
                f"for shapes {shapes}."
            )
        return shapes

    def _validate_masks(self, shapes, mask):
        if mask is None:
            return [None] * len(shapes)
        if not isinstance(mask, (list, tuple)) or len(mask) != len(shapes):
            received = (
                f"{len(mask)} masks"
                if isinstance(mask, (list, tuple))
                else f"a single mask of shape {tuple(mask.shape)}"
            )
            raise ValueError(
                f"{self._describe()} expects `mask` to be a list with one "
                f"entry (or None) per view, {len(shapes)} in all. "
                f"Received {received}."
            )
        for i, (s, m) in enumerate(zip(shapes, mask)):
            if m is None:
                continue
            ms = tuple(m.shape)
            if (
                len(s) != 3
                or len(ms) != 2
                or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(ms, s[:2])
                )
            ):
                raise ValueError(
                    f"{self._describe()} expects the mask of view {i} to "
                    f"have shape (batch, time) = {s[:2]} (masks apply to "
                    f"sequences only). Received a mask of shape {ms} for a "
                    f"view of shape {s}."
                )
        return list(mask)

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, (list, tuple)) and all(
            hasattr(x, "shape") for x in inputs
        ):
            for i, x in enumerate(inputs):
                dtype = keras.backend.standardize_dtype(x.dtype)
                if "float" not in dtype:
                    raise ValueError(
                        f"{self._describe()} expects floating-point views. "
                        f"Received view {i} with dtype {dtype}. Cast it "
                        "first, e.g. `keras.ops.cast(x, 'float32')`."
                    )
            shapes = self._validate_shapes([tuple(x.shape) for x in inputs])
            self._validate_masks(shapes, kwargs.get("mask"))
        elif hasattr(inputs, "shape"):
            self._validate_shapes(tuple(inputs.shape))
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        self._validate_shapes(input_shape)

    def _pool(self, x, mask):
        x = ops.cast(x, "float32")
        if len(x.shape) == 2:
            return x
        if mask is None:
            return ops.mean(x, axis=1)
        m = ops.expand_dims(ops.cast(mask, "float32"), -1)
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    def correlation(self, inputs, mask=None):
        """The total canonical correlation of the (pooled) views, a scalar."""
        shapes = self._validate_shapes([tuple(x.shape) for x in inputs])
        masks = self._validate_masks(shapes, mask)
        pooled = [self._pool(x, m) for x, m in zip(inputs, masks)]
        if self.multiview == "maxvar":
            return generalized_canonical_correlation(
                pooled, top_k=self.top_k, ridge=self.ridge
            )
        if len(pooled) == 2:
            return total_canonical_correlation(
                pooled[0], pooled[1], top_k=self.top_k, ridge=self.ridge
            )
        return multiview_canonical_correlation(
            pooled, top_k=self.top_k, ridge=self.ridge
        )

    def call(self, inputs, mask=None, training=None):
        if training and self.weight > 0:
            self.add_loss(-self.weight * self.correlation(inputs, mask=mask))
        return list(inputs)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return list(mask)

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def compute_output_spec(self, inputs, mask=None, training=None):
        return [
            keras.KerasTensor(
                x.shape,
                dtype=(
                    self.compute_dtype
                    if "float" in keras.backend.standardize_dtype(x.dtype)
                    else x.dtype
                ),
            )
            for x in inputs
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "top_k": self.top_k,
            "ridge": self.ridge,
            "weight": self.weight,
            "multiview": self.multiview,
        }
