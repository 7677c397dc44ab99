import math

import keras
from keras import ops

_DELTA_MODES = ("relative", "per_key_bias", "absolute")
_KEY_RANGES = ("forward", "both")
_LONG_MODES = ("clip", "error")


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class DeltaSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over one modality with a relative delta term.

    Delta self-attention (Panchal, section 4.1) attends over the time steps
    of one modality's sequence `X` (`(batch, T, d)`). A convolution first
    gives every step temporal context; the attention logits then get an
    extra term computed from the *difference* between the convolved
    features of the two steps, weighted by a learned table indexed by how
    far apart the steps are, so the attention can follow how a modality
    changes rather than its level (an idiosyncratic baseline, e.g. a face
    that always looks angry, cancels in a difference):

        X̂ = Conv1D(X)                                  (T, d_ch)   (Eq. 9)
        Q_h, K_h, V_h = X̂ W_Qh, X̂ W_Kh, X̂ W_Vh
        RPE[i, j] = (X̂_j - X̂_i) · W_RelPos[:, j - i]    for i <= j  (Eq. 11)
        Z_h = softmax((Q_h K_h^T + RPE) / sqrt(d_k)) V_h              (Eq. 10-11)
        out = [Z_1; ...; Z_H] W_O                        (T, d_o)    (Eq. 12)

    **The relative term (`delta="relative"`, the default).** The paper
    gives `W_RelPos ∈ R^{d_ch × T_M}`, `RPE ∈ R^{T_M × T_M}`, "shared across
    the heads", "`d_ch × T_M` additional parameters" per layer, and pairs
    `t_i`, `t_j` "where i <= j". We read the `T_M` columns as one column
    per *offset* `j - i ∈ {0, ..., T_M - 1}` (exactly the offsets that
    `i <= j` allows), so `RPE[i, j] = (X̂_j - X̂_i) · W_RelPos[:, j - i]` is
    a scalar per pair, the same for all heads (`share_across_heads=False`
    gives every head its own table, `(H, d_ch, T_max)`). This is what makes
    it a *relative position* embedding, as the paper calls it: the weight
    depends on the distance between the steps. The other non-degenerate
    reading, one column per *key position* `j`, ties the term to absolute
    positions (a change at step 5 would be weighted differently from the
    same change at step 15), which contradicts "relative"; it is not
    offered. Because the column changes with `j`, the query's part
    `X̂_i · W[:, j - i]` does not cancel in the softmax over `j`: with the
    query and key projections zeroed, different queries still get
    different attention rows (a test checks it).

    **The per-key-bias reading (`delta="per_key_bias"`).** Earlier
    versions of this layer used one vector `w_h` per head for every pair:
    `(X̂_j - X̂_i) · w_h = X̂_j · w_h - X̂_i · w_h`. The second part is the
    same for all keys of query `i` and cancels in the softmax, so the
    attention weights are exactly those of plain attention plus a learned
    per-key bias `X̂_j · w_h`; it equals the relative term with all `T_max`
    columns tied to one. Plain attention already contains such a per-key
    term through the query projection's bias (`b_Q · K_j`), so this reading
    adds almost nothing; it is kept so old models keep their behaviour.
    `delta="absolute"` uses `|X̂_j - X̂_i| · w_h`, a pairwise term without
    position (our addition, not the paper's; a `(batch, T, T, d_ch)`
    intermediate).

    **Keys `j >= i` and the sliding window.** The paper's "features at
    timestep `t_i` attend to the features at timestep `t_j` where
    `i <= j`" is read as: query `i` attends to itself and later steps
    (`key_range="forward"`, default), within the sliding window `j - i <=
    delta_window` (`None`: to the end of the sequence). `key_range="both"`
    attends to both sides, `|j - i| <= delta_window`, with the column of
    `|j - i|` for `j < i` (the difference keeps its sign); it is the band
    of earlier versions.

    **Sequences longer than `T_max`.** The table has `max_length` columns
    (default: the time length the layer is built with, which must then be
    known). With `long_sequences="clip"` (default), offsets `>= T_max - 1`
    share the last column (one learned weight for "far"), so the layer runs
    on any length; with `"error"`, calling it on a sequence longer than
    `max_length` raises (checked when the length is known at call time).
    With a window, only the columns `0..delta_window` are ever used, so
    `max_length=delta_window + 1` is enough.

    **Padding.** Padded steps (mask `False`) are zeroed before the
    convolution (so they do not leak into real steps through the kernel),
    never attended to (weight exactly 0), and their outputs are 0. A query
    whose allowed keys are all padding gets an all-zero row of weights. The
    mask comes from Keras masking (e.g. `Masking`, `Embedding(mask_zero=
    True)`) or the explicit `mask` call argument, and is passed on to the
    next layer.

    `use_delta=False` drops the delta term (and its weight): plain
    multi-head self-attention with otherwise identical parameters and
    masks, for the ablation.

    **Old files.** Configurations saved before `max_length` existed (no
    `max_length` key) load with their old behaviour: `delta="difference"`
    becomes `"per_key_bias"`, and `key_range="both"`. Passing
    `delta="difference"` to the constructor raises, because the name no
    longer says which reading is meant.

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
        delta_window: int >= 0 or None, the sliding window `w`. Default
            None (no window).
        delta: `"relative"` (default, see above), `"per_key_bias"` or
            `"absolute"`.
        use_delta: bool, add the delta term. Default True.
        max_length: int or None, `T_max`, the columns of the relative table.
            Default None: the time length at build.
        share_across_heads: bool, one relative table for all heads (the
            paper). Default True.
        key_range: `"forward"` (keys `j >= i`, default) or `"both"`.
        long_sequences: `"clip"` (default) or `"error"`, see above.
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
    >>> tuple(out.shape), tuple(weights.shape), tuple(layer.relative_kernel.shape)
    ((4, 10, 6), (4, 2, 10, 10), (8, 10))

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
        delta="relative",
        use_delta=True,
        max_length=None,
        share_across_heads=True,
        key_range="forward",
        long_sequences="clip",
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
        for name, value in (
            ("output_dim", output_dim),
            ("key_dim", key_dim),
            ("max_length", max_length),
        ):
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
        if delta == "difference":
            raise ValueError(
                "DeltaSelfAttention no longer accepts delta='difference': it "
                "named the per-key-bias reading of Eq. 11. Use "
                "delta='relative' (the paper's W_RelPos, one column per "
                "offset j - i, the default) or delta='per_key_bias' (the old "
                "behaviour). Received: delta='difference'"
            )
        for name, value, allowed in (
            ("delta", delta, _DELTA_MODES),
            ("key_range", key_range, _KEY_RANGES),
            ("long_sequences", long_sequences, _LONG_MODES),
        ):
            if value not in allowed:
                raise ValueError(
                    "DeltaSelfAttention received an invalid value for argument "
                    f"`{name}`, expected one of {allowed}. Received: "
                    f"{name}={value!r}"
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
        self.max_length = max_length
        self.share_across_heads = bool(share_across_heads)
        self.key_range = key_range
        self.long_sequences = long_sequences
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.supports_masking = True
        self._key_dim = key_dim or filters
        self._max_length = max_length
        self._dropout = keras.layers.Dropout(self.dropout, seed=seed)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "max_length" not in config:
            # Saved before the relative table existed: keep the old behaviour.
            if config.get("delta", "difference") == "difference":
                config["delta"] = "per_key_bias"
            config.setdefault("key_range", "both")
        return super().from_config(config)

    def _check_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                "DeltaSelfAttention expected a sequence of shape (batch, time, "
                f"features) with a known feature width. Received: input shape {shape}"
            )
        return shape

    @property
    def _uses_table(self):
        return self.use_delta and self.delta == "relative"

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
        if self._uses_table:
            if self._max_length is None:
                if shape[1] is None:
                    raise ValueError(
                        "DeltaSelfAttention with delta='relative' needs the "
                        "number of columns of W_RelPos: pass `max_length` or "
                        "build it on inputs with a known time length. "
                        f"Received: input shape {shape}, max_length=None"
                    )
                self._max_length = int(shape[1])
            table = (c, self._max_length)
            if not self.share_across_heads:
                table = (h,) + table
            self.relative_kernel = self.add_weight(
                shape=table, name="relative_kernel", initializer=init
            )
        elif self.use_delta:
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
        steps = inputs.shape[1]
        if (
            self._uses_table
            and self.long_sequences == "error"
            and self._max_length is not None
            and steps is not None
            and steps > self._max_length
        ):
            raise ValueError(
                "DeltaSelfAttention(long_sequences='error') expected at most "
                f"max_length={self._max_length} time steps (the columns of "
                f"W_RelPos). Received: {steps} steps. Use long_sequences='clip' "
                "or a larger max_length"
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

    def _offsets(self, steps):
        """`(T, T)` int offsets `j - i` and the float `(T, T)` "term applies"."""
        idx = ops.arange(steps)
        offset = idx[None, :] - idx[:, None]  # [i, j] = j - i
        if self.key_range == "forward":
            applies = ops.cast(offset >= 0, "float32")
        else:
            applies = ops.ones_like(offset, dtype="float32")
        return ops.abs(offset), applies

    def _relative(self, projected):
        """`RPE[b, (h,) i, j] = (X̂_j - X̂_i) · W[:, |j - i|]` (Eq. 11)."""
        w = ops.cast(self.relative_kernel, projected.dtype)
        steps = ops.shape(projected)[1]
        offset, applies = self._offsets(steps)
        column = ops.minimum(offset, self._max_length - 1)
        onehot = ops.one_hot(column, self._max_length, dtype=projected.dtype)
        applies = ops.cast(applies, projected.dtype)
        if self.share_across_heads:
            # a[b, t, o] = X̂_t · W[:, o]
            a = ops.einsum("btc,co->bto", projected, w)
            key_part = ops.einsum("bjo,ijo->bij", a, onehot)  # X̂_j · W[:, j-i]
            query_part = ops.einsum("bio,ijo->bij", a, onehot)  # X̂_i · W[:, j-i]
            return ((key_part - query_part) * applies)[:, None, :, :]
        a = ops.einsum("btc,hco->bhto", projected, w)
        key_part = ops.einsum("bhjo,ijo->bhij", a, onehot)
        query_part = ops.einsum("bhio,ijo->bhij", a, onehot)
        return (key_part - query_part) * applies

    def _logits(self, projected):
        """Eq. 11 logits `(Q K^T + RPE) / sqrt(d_k)`, `(batch, H, T, T)`."""
        q = self._heads(self.query_dense(projected), self._key_dim)
        k = self._heads(self.key_dense(projected), self._key_dim)
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        if self._uses_table:
            logits = logits + self._relative(projected)
        elif self.use_delta:
            w = ops.cast(self.delta_kernel, projected.dtype)
            if self.delta == "per_key_bias":
                # (X̂_j - X̂_i) · w_h = s_j - s_i with s = X̂ w_h.
                s = ops.transpose(ops.matmul(projected, w), (0, 2, 1))
                rpe = s[:, :, None, :] - s[:, :, :, None]
            else:
                diff = ops.abs(projected[:, None, :, :] - projected[:, :, None, :])
                rpe = ops.transpose(ops.matmul(diff, w), (0, 3, 1, 2))
            if self.key_range == "forward":
                _, applies = self._offsets(ops.shape(projected)[1])
                rpe = rpe * ops.cast(applies, rpe.dtype)
            logits = logits + rpe
        return logits / ops.cast(math.sqrt(self._key_dim), logits.dtype)

    def _allowed(self, steps, mask):
        """Boolean `(batch or 1, 1, T, T)`: which keys each query may attend."""
        allowed = None
        idx = ops.arange(steps)
        offset = idx[None, :] - idx[:, None]  # j - i
        if self.key_range == "forward":
            allowed = offset >= 0
        if self.delta_window is not None:
            band = ops.abs(offset) <= self.delta_window
            allowed = band if allowed is None else ops.logical_and(allowed, band)
        if allowed is not None:
            allowed = allowed[None, None, :, :]
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
            # Always present (also when None): marks configs of this version.
            "max_length": self._max_length,
            "share_across_heads": self.share_across_heads,
            "key_range": self.key_range,
            "long_sequences": self.long_sequences,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }
