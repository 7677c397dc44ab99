import math

import keras
from keras import ops

_DELTA_MODES = ("difference", "absolute")


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class DeltaSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over one modality with a feature-delta logit term.

    Delta self-attention (Panchal, section 4.1) attends over the time steps
    of one modality's sequence `X` (`(batch, T, d)`). A convolution first
    gives every step temporal context; the attention logits then get an
    extra term computed from the *difference* between the convolved
    features of the two steps, so the attention can follow how a modality
    changes rather than its level (an idiosyncratic baseline, e.g. a face
    that always looks angry, cancels in a difference):

        X̂ = Conv1D(X)                          (T, d_ch)           (Eq. 9)
        Q_h, K_h, V_h = X̂ W_Qh, X̂ W_Kh, X̂ W_Vh
        RPE_h[i, j] = (X̂_j - X̂_i) · w_h        scalar per head     (Eq. 11)
        Z_h = softmax((Q_h K_h^T + RPE_h) / sqrt(d_k)) V_h          (Eq. 10-11)
        out = [Z_1; ...; Z_H] W_O                (T, d_o)            (Eq. 12)

    **Shape of the delta weight.** The paper writes `W_RelPos ∈
    R^{d_ch × T_M}`, which does not give a scalar per pair `(i, j)` and ties
    the layer to one sequence length. We use `delta_kernel` of shape
    `(d_ch, H)`: column `w_h` turns the `d_ch`-dim difference into one
    scalar logit per head, for any sequence length.

    **What the linear difference can do.** Because `(X̂_j - X̂_i) · w_h =
    X̂_j · w_h - X̂_i · w_h` and the second part is the same for every key
    `j` of query `i`, it cancels in the softmax over `j`: with
    `delta="difference"` (the paper's formula) the attention *weights* are
    those of a learned per-key bias `X̂_j · w_h` (the *logits* differ by a
    per-row constant). `delta="absolute"` uses `|X̂_j - X̂_i| · w_h`
    instead, a genuinely pairwise term (how far step `j` is from step `i`
    in each feature) that does not cancel; it costs a `(batch, T, T,
    d_ch)` intermediate. Both are offered; the experiment in
    `docs/delta_attention.md` compares them.

    **Delta window.** `delta_window=w` limits each query `i` to the keys
    `|i - j| <= w` (a band mask, the paper's "sliding window"); `None`
    attends over the whole sequence.

    **Padding.** Padded steps (mask `False`) are zeroed before the
    convolution (so they do not leak into real steps through the kernel),
    never attended to (weight exactly 0), and their outputs are 0. A query
    whose band holds no real step gets an all-zero row of weights. The
    mask comes from Keras masking (e.g. `Masking`, `Embedding(mask_zero=
    True)`) or the explicit `mask` call argument, and is passed on to the
    next layer.

    `use_delta=False` drops the delta term (and its weight): plain
    multi-head self-attention with otherwise identical parameters, for the
    ablation.

    Args:
        num_heads: int, the number of heads `H`.
        filters: int, `d_ch`: channels of the convolution (Eq. 9) and the
            value width of each head.
        output_dim: int or None, `d_o` (Eq. 12). Default None: the input
            width `d`.
        kernel_size: int, the convolution's kernel size (`kernel_M`).
            Default 3. `1` gives a position-wise projection.
        key_dim: int or None, the query/key width `d_k` of a head. Default
            None: `filters`.
        delta_window: int >= 0 or None, the band half-width `w`. Default
            None (no band).
        delta: `"difference"` (Eq. 11 as written) or `"absolute"` (see
            above). Default "difference".
        use_delta: bool, add the delta term. Default True.
        dropout: float in [0, 1), dropout on the attention weights during
            training. Default 0.
        kernel_initializer: initializer of the kernels. Default
            "glorot_uniform".
        seed: int or None, seed of the attention dropout.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a float tensor `(batch, T, d)`.
        mask: optional boolean `(batch, T)`, `True` at real steps.
        training: bool, enables dropout.
        return_attention_scores: bool; if True also return the attention
            weights `(batch, H, T, T)`.

    Returns:
        `(batch, T, d_o)`, and the weights if `return_attention_scores`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import DeltaSelfAttention
    >>> layer = DeltaSelfAttention(num_heads=2, filters=8, output_dim=6,
    ...                            kernel_size=3, delta_window=2)
    >>> x = np.random.default_rng(0).normal(size=(4, 10, 5)).astype("float32")
    >>> mask = np.arange(10)[None, :] < np.array([[10], [7], [4], [9]])
    >>> out, weights = layer(x, mask=mask, return_attention_scores=True)
    >>> tuple(out.shape), tuple(weights.shape)
    ((4, 10, 6), (4, 2, 10, 10))

    Reference:
        Panchal, "Hierarchical Delta-Attention Method for Multimodal
        Fusion", section 4.1, Eq. 9-12 (Fig. 1).
    """

    def __init__(
        self,
        num_heads,
        filters,
        output_dim=None,
        kernel_size=3,
        key_dim=None,
        delta_window=None,
        delta="difference",
        use_delta=True,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("num_heads", num_heads),
            ("filters", filters),
            ("kernel_size", kernel_size),
        ):
            if not _positive_int(value):
                raise ValueError(
                    f"DeltaSelfAttention received an invalid value for argument "
                    f"`{name}`, expected a positive integer. Received: "
                    f"{name}={value!r}"
                )
        for name, value in (("output_dim", output_dim), ("key_dim", key_dim)):
            if value is not None and not _positive_int(value):
                raise ValueError(
                    f"DeltaSelfAttention received an invalid value for argument "
                    f"`{name}`, expected a positive integer or None. Received: "
                    f"{name}={value!r}"
                )
        if delta_window is not None and (
            isinstance(delta_window, bool)
            or not isinstance(delta_window, int)
            or delta_window < 0
        ):
            raise ValueError(
                "DeltaSelfAttention received an invalid value for argument "
                "`delta_window`, expected a non-negative integer or None. "
                f"Received: delta_window={delta_window!r}"
            )
        if delta not in _DELTA_MODES:
            raise ValueError(
                "DeltaSelfAttention received an invalid value for argument "
                f"`delta`, expected one of {_DELTA_MODES}. Received: delta={delta!r}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                "DeltaSelfAttention received an invalid value for argument "
                f"`dropout`, expected a float in [0, 1). Received: dropout={dropout!r}"
            )
        self.num_heads = num_heads
        self.filters = filters
        self.output_dim = output_dim
        self.kernel_size = kernel_size
        self.key_dim = key_dim
        self.delta_window = delta_window
        self.delta = delta
        self.use_delta = bool(use_delta)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.supports_masking = True
        self._key_dim = key_dim or filters
        self._dropout = keras.layers.Dropout(self.dropout, seed=seed)

    def _check_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                "DeltaSelfAttention expected a sequence of shape (batch, time, "
                f"features) with a known feature width. Received: input shape {shape}"
            )
        return shape

    def build(self, input_shape):
        shape = self._check_shape(input_shape)
        self._output_dim = self.output_dim or shape[-1]
        h, c, dk = self.num_heads, self.filters, self._key_dim
        init = self.kernel_initializer

        def dense(units, name):
            return keras.layers.Dense(
                units, kernel_initializer=init, dtype=self.dtype_policy, name=name
            )

        self.conv = keras.layers.Conv1D(
            c,
            self.kernel_size,
            padding="same",
            kernel_initializer=init,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.conv.build(shape)
        self.query_dense = dense(h * dk, "query")
        self.key_dense = dense(h * dk, "key")
        self.value_dense = dense(h * c, "value")
        self.output_dense = dense(self._output_dim, "output")
        for layer in (self.query_dense, self.key_dense, self.value_dense):
            layer.build(shape[:2] + (c,))
        self.output_dense.build(shape[:2] + (h * c,))
        if self.use_delta:
            self.delta_kernel = self.add_weight(
                shape=(c, h), name="delta_kernel", initializer=init
            )

    def _validate_call(self, inputs, mask):
        self._check_shape(inputs.shape)
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "float" not in dtype:
            raise ValueError(
                "DeltaSelfAttention expected a floating-point input. "
                f"Received: dtype {dtype}"
            )
        if mask is not None:
            mask_shape = tuple(mask.shape)
            expected = tuple(inputs.shape[:2])
            if len(mask_shape) != 2 or any(
                a is not None and b is not None and a != b
                for a, b in zip(mask_shape, expected)
            ):
                raise ValueError(
                    "DeltaSelfAttention expected a padding mask of shape (batch, "
                    f"time) = {expected} matching the inputs. Received: mask of "
                    f"shape {mask_shape}"
                )

    def _heads(self, x, width):
        batch, steps = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, steps, self.num_heads, width))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, H, T, width)

    def _logits(self, projected):
        """Eq. 11 logits `(Q K^T + RPE) / sqrt(d_k)`, `(batch, H, T, T)`."""
        q = self._heads(self.query_dense(projected), self._key_dim)
        k = self._heads(self.key_dense(projected), self._key_dim)
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        if self.use_delta:
            w = ops.cast(self.delta_kernel, projected.dtype)
            if self.delta == "difference":
                # (X̂_j - X̂_i) · w_h = s_j - s_i with s = X̂ w_h (Eq. 11).
                s = ops.transpose(ops.matmul(projected, w), (0, 2, 1))
                rpe = s[:, :, None, :] - s[:, :, :, None]
            else:
                diff = ops.abs(projected[:, None, :, :] - projected[:, :, None, :])
                rpe = ops.transpose(ops.matmul(diff, w), (0, 3, 1, 2))
            logits = logits + rpe
        return logits / ops.cast(math.sqrt(self._key_dim), logits.dtype)

    def _allowed(self, steps, mask):
        """Boolean `(batch or 1, 1, T, T)`: which keys each query may attend."""
        allowed = None
        if self.delta_window is not None:
            idx = ops.arange(steps)
            band = ops.abs(idx[:, None] - idx[None, :]) <= self.delta_window
            allowed = band[None, None, :, :]
        if mask is not None:
            keys = ops.cast(mask, "bool")[:, None, None, :]
            allowed = keys if allowed is None else ops.logical_and(allowed, keys)
        return allowed

    def _project(self, inputs, mask):
        if mask is not None:
            inputs = inputs * ops.cast(mask, inputs.dtype)[:, :, None]
        return self.conv(inputs)  # Eq. 9

    def attention_logits(self, inputs, mask=None):
        """The Eq. 11 logits `(batch, H, T, T)` before masking and softmax."""
        inputs = ops.convert_to_tensor(inputs)
        self._validate_call(inputs, mask)
        return self._logits(self._project(inputs, mask))

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        self._validate_call(inputs, mask)
        projected = self._project(inputs, mask)
        logits = ops.cast(self._logits(projected), "float32")
        allowed = self._allowed(ops.shape(inputs)[1], mask)
        if allowed is not None:
            logits = ops.where(allowed, logits, -1e9)
        weights = ops.softmax(logits, axis=-1)
        if allowed is not None:
            # Exact zeros, also in rows where every key is masked.
            weights = weights * ops.cast(allowed, weights.dtype)
        weights = ops.cast(weights, projected.dtype)
        dropped = self._dropout(weights, training=training)
        values = self._heads(self.value_dense(projected), self.filters)
        z = ops.matmul(dropped, values)  # (batch, H, T, d_ch), Eq. 11
        z = ops.transpose(z, (0, 2, 1, 3))
        z = ops.reshape(
            z, (ops.shape(z)[0], ops.shape(z)[1], self.num_heads * self.filters)
        )
        outputs = self.output_dense(z)  # Eq. 12
        if mask is not None:
            outputs = outputs * ops.cast(mask, outputs.dtype)[:, :, None]
        if return_attention_scores:
            return outputs, weights
        return outputs

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        shape = self._check_shape(input_shape)
        return shape[:2] + (self.output_dim or shape[-1],)

    def compute_output_spec(
        self, inputs, mask=None, training=None, return_attention_scores=False
    ):
        shape = self.compute_output_shape(inputs.shape)
        out = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if return_attention_scores:
            steps = shape[1]
            weights = keras.KerasTensor(
                (shape[0], self.num_heads, steps, steps), dtype=self.compute_dtype
            )
            return out, weights
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "filters": self.filters,
            "output_dim": self.output_dim,
            "kernel_size": self.kernel_size,
            "key_dim": self.key_dim,
            "delta_window": self.delta_window,
            "delta": self.delta,
            "use_delta": self.use_delta,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }
