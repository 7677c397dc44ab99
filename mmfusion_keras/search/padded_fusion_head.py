"""One compiled fusion head for every sampled architecture (search speed).

`build_fusion_head` builds a new Keras model per sampled description, so
every sampled architecture pays model construction and, with a compiled
train step, a fresh trace and XLA compile (30-50 s per architecture on JAX
on a loaded 2-core CPU, against well under a second of actual training on
cached features). `PaddedFusionTrainer` builds one fixed-shape model for
the whole search space instead and only changes its weights and masks:

- every level `l = 1..L` gets the input `[pad(x_m); pad(y_n)]`, the two
  chosen features zero-padded to the widest `x` and the widest `y`;
- level `l` computes `z = [pad(x_m); pad(y_n); h_{l-1}] W_l + b_l` with
  `h_0 = 0`, then `a = sum_p g_{l,p} sigma_p(z)` with a one-hot gate
  `g_l` choosing the activation, and `h_l = s_l a + (1 - s_l) h_{l-1}`
  with `s_l = 1` for the description's levels and `0` after its end;
- a softmax `Dense` on `h_L` classifies.

Padded inputs are exactly zero, so the padded rows of `W_l` get exactly
zero gradients (Adam then leaves them unchanged), as do the weights of
levels past the description's end (`s_l = 0`) and the `h_0` rows of level
1: the model computes Eq. 1-2 of the description and trains exactly its
weights. Numbers differ from `build_fusion_head`'s only by float rounding
(sums over extra zero terms). The optimizer's state is reset before every
architecture, so each starts with a fresh Adam, as a new model would.
"""

import time

import keras
import numpy as np

from mmfusion_keras.search.fusion_network import x_name
from mmfusion_keras.search.fusion_network import y_name
from mmfusion_keras.search.shared_fusion_weights import SharedFusionWeights


class _MaskedFusionStack(keras.layers.Layer):
    """`L` fusion levels with per-level activation gates and on/off masks.

    Input `(batch, L, W)` (level `l`'s padded `[x_m; y_n]`), output the
    last fusion state `(batch, units)`. Private to the search: the
    public fusion network of a description is `build_fusion_head`.
    """

    def __init__(self, units, activations, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activations = tuple(activations)
        self._fns = [keras.activations.get(a) for a in self.activations]

    def build(self, input_shape):
        levels, width = int(input_shape[1]), int(input_shape[2])
        self.kernel = self.add_weight(
            shape=(levels, width + self.units, self.units),
            name="kernel",
            initializer="zeros",
        )
        self.bias = self.add_weight(
            shape=(levels, self.units), name="bias", initializer="zeros"
        )
        self.level_on = self.add_weight(
            shape=(levels,), name="level_on", initializer="zeros", trainable=False
        )
        self.gate = self.add_weight(
            shape=(levels, len(self.activations)),
            name="gate",
            initializer="zeros",
            trainable=False,
        )

    def call(self, inputs):
        levels = inputs.shape[1]
        h = keras.ops.zeros((keras.ops.shape(inputs)[0], self.units), inputs.dtype)
        for level in range(levels):
            z = keras.ops.concatenate([inputs[:, level], h], axis=-1)
            z = keras.ops.matmul(z, self.kernel[level]) + self.bias[level]  # Eq. 1
            a = 0.0
            for p, fn in enumerate(self._fns):
                a = a + self.gate[level, p] * fn(z)
            on = self.level_on[level]
            h = on * a + (1.0 - on) * h
        return h

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activations": list(self.activations),
        }


def glorot_uniform(rng, fan_in, fan_out):
    """Keras's default `Dense` kernel initialiser, drawn with NumPy."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype("float32")


class PaddedFusionTrainer:
    """Trains sampled fusion heads on cached features with one model.

    Builds (and, unless `run_eagerly`, compiles) a single fixed-shape model
    for the search space and reuses it for every description (see the
    module docstring for why the result is the description's network):
    there is no model construction and no new trace or XLA compile per
    sampled architecture. Initial weights are drawn with NumPy (Keras's
    default Glorot-uniform kernels and zero biases, with the fan-in of the
    description's own layer) from `seed`, then overwritten from a
    `SharedFusionWeights` bank wherever its key matches; after training the
    description's weights are cut out of the padded ones and stored back.
    The validation accuracy is computed with NumPy from those weights.

    Args:
        space: the `SearchSpace`.
        x_widths, y_widths: widths of the candidate features.
        num_classes: classes.
        units: fusion-layer width.
        batch_size: batch size.
        learning_rate: Adam learning rate.
        run_eagerly: passed to `compile`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.search import SearchSpace
    >>> rng = np.random.default_rng(0)
    >>> feats = {"x1": rng.normal(size=(32, 3)), "y1": rng.normal(size=(32, 2))}
    >>> labels = rng.integers(0, 2, 32)
    >>> space = SearchSpace(1, 1, ("relu",), max_layers=2)
    >>> trainer = PaddedFusionTrainer(space, [3], [2], 2, units=4)
    >>> acc, seconds, restored, weights = trainer.train(
    ...     [(1, 1, 1)], (feats, labels), (feats, labels), epochs=1, seed=0)
    >>> [w.shape for w in weights[0]]
    [(5, 4), (4,)]

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, Eq. 1-2 and section 3.2.
    """

    def __init__(
        self,
        space,
        x_widths,
        y_widths,
        num_classes,
        units=16,
        batch_size=64,
        learning_rate=1e-3,
        run_eagerly=False,
    ):
        self.space = space
        self.x_widths = [int(w) for w in x_widths]
        self.y_widths = [int(w) for w in y_widths]
        self.num_classes = int(num_classes)
        self.units = int(units)
        self.batch_size = int(batch_size)
        self.width_x = max(self.x_widths)
        self.width = self.width_x + max(self.y_widths)
        self._inputs_cache = {}
        levels = space.max_layers
        inputs = keras.Input((levels, self.width), name="levels")
        self.stack = _MaskedFusionStack(units, space.activations, name="fusion")
        h = self.stack(inputs)
        self.classifier = keras.layers.Dense(
            num_classes, activation="softmax", name="classifier"
        )
        outputs = self.classifier(h)
        self.model = keras.Model(inputs, outputs, name="padded_fusion_head")
        self.model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            run_eagerly=run_eagerly,
        )
        self.model.optimizer.build(self.model.trainable_variables)
        self._optimizer_start = [
            np.array(v.numpy()) for v in self.model.optimizer.variables
        ]

    # ------------------------------------------------------------- layout
    def _rows(self, level, m, n):
        """Rows of the padded kernel holding `[x_m; y_n; h]` of `level`."""
        dx, dy = self.x_widths[m - 1], self.y_widths[n - 1]
        rows = list(range(dx)) + list(range(self.width_x, self.width_x + dy))
        if level > 1:
            rows += list(range(self.width, self.width + self.units))
        return np.asarray(rows)

    def padded_inputs(self, description, features):
        """`(batch, L, W)`: level `l`'s `[pad(x_m); pad(y_n)]`, zeros after."""
        first = features[x_name(1)]
        out = np.zeros((len(first), self.space.max_layers, self.width), "float32")
        for level, (m, n, _) in enumerate(description):
            x, y = features[x_name(m)], features[y_name(n)]
            out[:, level, : x.shape[-1]] = x
            out[:, level, self.width_x : self.width_x + y.shape[-1]] = y
        return out

    def forward(self, description, weights, features):
        """Softmax outputs of the description's network (NumPy, Eq. 1-2)."""
        fns = {
            "relu": lambda z: np.maximum(z, 0.0),
            "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
        }
        h = None
        for level, (m, n, p) in enumerate(description):
            parts = [features[x_name(m)], features[y_name(n)]]
            parts += [] if h is None else [h]
            kernel, bias = weights[level]
            z = np.concatenate(parts, axis=-1) @ kernel + bias
            name = self.space.activations[p - 1]
            if name in fns:
                h = fns[name](z)
            else:
                h = np.asarray(keras.activations.get(name)(z))
        kernel, bias = weights[-1]
        logits = h @ kernel + bias
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    # ------------------------------------------------------------ weights
    def initial_weights(self, description, seed):
        """Glorot-uniform kernels and zero biases of the description."""
        rng = np.random.default_rng(seed)
        weights = []
        for level, (m, n, _) in enumerate(description, start=1):
            fan_in = len(self._rows(level, m, n))
            weights.append(
                [
                    glorot_uniform(rng, fan_in, self.units),
                    np.zeros(self.units, "float32"),
                ]
            )
        weights.append(
            [
                glorot_uniform(rng, self.units, self.num_classes),
                np.zeros(self.num_classes, "float32"),
            ]
        )
        return weights

    def _set(self, description, weights):
        levels = self.space.max_layers
        kernel = np.zeros((levels, self.width + self.units, self.units), "float32")
        bias = np.zeros((levels, self.units), "float32")
        on = np.zeros(levels, "float32")
        gate = np.zeros((levels, len(self.space.activations)), "float32")
        for level, (m, n, p) in enumerate(description, start=1):
            kernel[level - 1, self._rows(level, m, n)] = weights[level - 1][0]
            bias[level - 1] = weights[level - 1][1]
            on[level - 1] = 1.0
            gate[level - 1, p - 1] = 1.0
        self.stack.set_weights([kernel, bias, on, gate])
        self.classifier.set_weights(weights[-1])
        for variable, value in zip(
            self.model.optimizer.variables, self._optimizer_start
        ):
            variable.assign(value)

    def _get(self, description):
        kernel, bias, _, _ = self.stack.get_weights()
        weights = [
            [kernel[level - 1, self._rows(level, m, n)], bias[level - 1]]
            for level, (m, n, _) in enumerate(description, start=1)
        ]
        return weights + [[np.array(w) for w in self.classifier.get_weights()]]

    def _keys(self, description):
        for level, (m, n, p) in enumerate(description, start=1):
            yield SharedFusionWeights.key(
                level,
                len(self._rows(level, m, n)),
                self.units,
                self.space.activations[p - 1],
            )

    # -------------------------------------------------------------- train
    def train(
        self,
        description,
        train,
        validation,
        epochs=2,
        seed=0,
        shared_weights=None,
        shuffle=True,
    ):
        """Trains one description; returns `(accuracy, seconds, restored, weights)`.

        `weights` is `[[kernel, bias] per fusion layer, [kernel, bias] of
        the classifier]` with the shapes of `build_fusion_head`'s layers.
        """
        description = self.space.validate(description)
        start = time.perf_counter()
        weights = self.initial_weights(description, seed)
        restored = []
        if shared_weights is not None:
            for level, key in enumerate(self._keys(description)):
                if key in shared_weights.weights:
                    weights[level] = [np.array(w) for w in shared_weights.weights[key]]
                    restored.append(key)
        self._set(description, weights)
        keras.utils.set_random_seed(seed)
        self.model.fit(
            self.padded_inputs(description, train[0]),
            np.asarray(train[1]),
            epochs=epochs,
            batch_size=self.batch_size,
            shuffle=shuffle,
            verbose=0,
        )
        weights = self._get(description)
        probabilities = self.forward(description, weights, validation[0])
        accuracy = float(
            np.mean(np.argmax(probabilities, -1) == np.asarray(validation[1]))
        )
        if shared_weights is not None:
            for level, key in enumerate(self._keys(description)):
                shared_weights.weights[key] = [np.array(w) for w in weights[level]]
        return accuracy, time.perf_counter() - start, restored, weights
