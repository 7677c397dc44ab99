import math

import keras
from keras import ops


def _shape_tuple(shape):
    return tuple(None if d is None else int(d) for d in shape)


def validate_target_source(layer, shapes):
    """Checks `[target, source]` sequence shapes for a cross-modal layer.

    Raises a `ValueError` naming `layer` unless `shapes` holds exactly two
    rank-3 shapes `(batch, time, features)` with known feature widths and
    equal batch sizes. Returns them as tuples.
    """
    describe = f"Layer {layer.__class__.__name__} (name={layer.name!r})"
    if not isinstance(shapes, (list, tuple)) or (
        len(shapes) > 0 and not isinstance(shapes[0], (list, tuple))
    ):
        raise ValueError(
            f"{describe} expects a list of exactly 2 sequences [target, "
            f"source]. Received a single tensor of shape {shapes}. Pass "
            "`layer([x_target, x_source])` (the same tensor twice for "
            "self-attention)."
        )
    shapes = [_shape_tuple(s) for s in shapes]
    if len(shapes) != 2:
        raise ValueError(
            f"{describe} expects a list of exactly 2 sequences [target, "
            f"source]. Received {len(shapes)} tensors with shapes {shapes}."
        )
    for name, s in zip(("target", "source"), shapes):
        if len(s) != 3:
            raise ValueError(
                f"{describe} expects the {name} to have rank 3 (batch, time, "
                f"features). Received {name} with rank {len(s)} and shape {s}."
            )
        if s[-1] is None:
            raise ValueError(
                f"{describe} needs the feature width of the {name} to be "
                f"known. Received {name} with shape {s}."
            )
    if None not in (shapes[0][0], shapes[1][0]) and shapes[0][0] != shapes[1][0]:
        raise ValueError(
            f"{describe} expects the target and source to have the same batch "
            f"size. Received target shape {shapes[0]} and source shape "
            f"{shapes[1]}."
        )
    return shapes


def validate_target_source_call(layer, inputs, mask):
    """`validate_target_source` plus dtype and mask checks on real tensors."""
    describe = f"Layer {layer.__class__.__name__} (name={layer.name!r})"
    if isinstance(inputs, (list, tuple)) and all(hasattr(x, "shape") for x in inputs):
        for name, x in zip(("target", "source"), inputs):
            dtype = keras.backend.standardize_dtype(x.dtype)
            if "float" not in dtype:
                raise ValueError(
                    f"{describe} expects floating-point sequences. Received "
                    f"{name} with dtype {dtype}. Cast it first, e.g. "
                    "`keras.ops.cast(x, 'float32')`."
                )
        shapes = validate_target_source(layer, [tuple(x.shape) for x in inputs])
    elif hasattr(inputs, "shape"):
        validate_target_source(layer, tuple(inputs.shape))
        return
    else:
        return
    if mask is None:
        return
    if not isinstance(mask, (list, tuple)) or len(mask) != 2:
        received = (
            f"{len(mask)} masks"
            if isinstance(mask, (list, tuple))
            else f"a single mask of shape {tuple(mask.shape)}"
        )
        raise ValueError(
            f"{describe} expects `mask` to be a list [target_mask, "
            f"source_mask] (entries may be None). Received {received}."
        )
    for name, s, m in zip(("target", "source"), shapes, mask):
        if m is None:
            continue
        ms = _shape_tuple(m.shape)
        if len(ms) != 2 or any(
            a is not None and b is not None and a != b for a, b in zip(ms, s[:2])
        ):
            raise ValueError(
                f"{describe} expects the {name} mask to have shape (batch, "
                f"time) = {s[:2]}. Received a mask of shape {ms}."
            )


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class CrossModalAttention(keras.layers.Layer):
    """Multi-head cross-modal attention: a target sequence attends to a source.

    Queries come from the target modality `alpha`, keys and values from the
    source modality `beta`; the two sequences may have different lengths
    and widths (unaligned modalities). Per head `h`:

        Q = X_alpha W_Q + b_Q,  K = X_beta W_K + b_K,  V = X_beta W_V + b_V
        A = softmax(Q K^T / sqrt(d_k))     over source steps     (Eq. 2-3)
        Y_h = A V                                                (Eq. 1)

    and the heads are concatenated and projected, `Y = [Y_1 .. Y_H] W_O`,
    as in the multi-head attention MulT uses (the paper's Eq. 1-3 show one
    head without biases; the biases and `W_O` follow MulT's code). With a
    source mask, padded source steps get exactly zero attention weight; a
    sample whose source is entirely padded attends to nothing (its output
    is the output bias). Query positions are not masked (their outputs are
    computed; the target mask is passed on as the output mask). Attention
    dropout (`dropout`) drops attention weights in training.

    `use_causal_mask=True` adds MulT's attention mask (its code's
    `buffered_future_mask`, on by default in MulT): target step `i` may only
    attend to source steps `j <= i + |T_beta - T_alpha|`, i.e. MulT's
    `triu(-inf, 1 + |T_beta - T_alpha|)` added to the logits. For
    self-attention (equal lengths) this is the usual causal mask. The offset
    uses the tensors' (padded) lengths, as MulT does; it combines with the
    source padding mask (a step must pass both).

    Args:
        num_heads: number of heads `H`, a positive integer.
        key_dim: width `d_k` of queries and keys per head; default
            `max(1, target_width // num_heads)`.
        value_dim: width of values per head; default `key_dim`.
        output_dim: width of the output; default the target's width.
        dropout: attention-weight dropout rate in `[0, 1)`.
        use_causal_mask: if true, apply MulT's (shifted) causal mask
            described above. Default False.
        use_bias: whether the projections have biases.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the biases.
        seed: seed of the dropout.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: list `[target, source]` of float tensors
            `(batch, T_alpha, d_alpha)` and `(batch, T_beta, d_beta)`.
        mask: optional list `[target_mask, source_mask]` of boolean
            `(batch, T)` masks (true at real steps; entries may be None).
            Keras masks carried by the inputs are used automatically.
        training: Python bool, enables dropout.
        return_attention_scores: if true, also return the attention
            weights `(batch, H, T_alpha, T_beta)`.

    Returns:
        `(batch, T_alpha, output_dim)`, or a tuple with the attention
        weights when `return_attention_scores` is true.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> from mmfusion_keras.layers import CrossModalAttention
    >>> language = np.random.rand(2, 5, 8).astype("float32")
    >>> audio = np.random.rand(2, 7, 6).astype("float32")
    >>> audio_mask = np.arange(7)[None, :] < np.array([[7], [4]])
    >>> layer = CrossModalAttention(num_heads=2)
    >>> y, scores = layer([language, audio], mask=[None, audio_mask],
    ...                   return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((2, 5, 8), (2, 2, 5, 7))
    >>> float(ops.convert_to_numpy(scores)[1, :, :, 4:].max())
    0.0

    Reference:
        Tsai et al. Multimodal Transformer for Unaligned Multimodal Language
        Sequences (MulT), ACL 2019, Eq. 1-2; restated in Panchal,
        Hierarchical Delta-Attention Method for Multimodal Fusion, Eq. 1-3.
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        value_dim=None,
        output_dim=None,
        dropout=0.0,
        use_causal_mask=False,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        for name, value, allow_none in (
            ("num_heads", num_heads, False),
            ("key_dim", key_dim, True),
            ("value_dim", value_dim, True),
            ("output_dim", output_dim, True),
        ):
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Layer {self.__class__.__name__}: received an invalid "
                    f"value for argument `{name}`, expected a positive "
                    f"integer{' or None' if allow_none else ''}. "
                    f"Received: {name}={value!r}"
                )
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(
                f"Layer {self.__class__.__name__}: received an invalid value "
                "for argument `dropout`, expected a number in [0, 1). "
                f"Received: dropout={dropout!r}"
            )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.output_dim = output_dim
        self.dropout = float(dropout)
        self.use_causal_mask = bool(use_causal_mask)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy
        )

    def __call__(self, inputs, *args, **kwargs):
        validate_target_source_call(self, inputs, kwargs.get("mask"))
        return super().__call__(inputs, *args, **kwargs)

    def _dims(self, target_shape, source_shape):
        key_dim = self.key_dim or max(1, target_shape[-1] // self.num_heads)
        value_dim = self.value_dim or key_dim
        output_dim = self.output_dim or target_shape[-1]
        return key_dim, value_dim, output_dim

    def build(self, input_shape):
        target_shape, source_shape = validate_target_source(self, input_shape)
        key_dim, value_dim, output_dim = self._dims(target_shape, source_shape)
        h = self.num_heads
        d_t, d_s = target_shape[-1], source_shape[-1]

        def kernel(name, shape):
            return self.add_weight(
                shape=shape, name=name, initializer=self.kernel_initializer
            )

        def bias(name, shape):
            if not self.use_bias:
                return None
            return self.add_weight(
                shape=shape, name=name, initializer=self.bias_initializer
            )

        self.query_kernel = kernel("query_kernel", (d_t, h, key_dim))
        self.query_bias = bias("query_bias", (h, key_dim))
        self.key_kernel = kernel("key_kernel", (d_s, h, key_dim))
        self.key_bias = bias("key_bias", (h, key_dim))
        self.value_kernel = kernel("value_kernel", (d_s, h, value_dim))
        self.value_bias = bias("value_bias", (h, value_dim))
        self.output_kernel = kernel("output_kernel", (h, value_dim, output_dim))
        self.output_bias = bias("output_bias", (output_dim,))
        self.attention_dropout.build((None, h, target_shape[1], source_shape[1]))

    def _project(self, x, kernel, bias):
        y = ops.einsum("btd,dhk->bthk", x, kernel)
        return y if bias is None else y + bias

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        target, source = inputs
        source_mask = None if mask is None else mask[1]
        key_dim = self.query_kernel.shape[-1]
        q = self._project(target, self.query_kernel, self.query_bias)  # Q_alpha
        k = self._project(source, self.key_kernel, self.key_bias)  # K_beta
        v = self._project(source, self.value_kernel, self.value_bias)  # V_beta
        # Eq. 2: Q_alpha K_beta^T / sqrt(d_k), softmax over source steps,
        # computed in float32 so masking and softmax are exact under
        # mixed precision.
        logits = ops.einsum("bqhk,bshk->bhqs", q, k)
        logits = ops.cast(logits, "float32") / math.sqrt(key_dim)
        keep = None
        if source_mask is not None:
            keep = ops.cast(source_mask, "bool")[:, None, None, :]
        if self.use_causal_mask:
            # MulT's buffered_future_mask: step i sees j <= i + |T_s - T_t|.
            t_len, s_len = ops.shape(target)[1], ops.shape(source)[1]
            offset = ops.abs(s_len - t_len)
            allowed = ops.arange(s_len)[None, :] <= (
                ops.arange(t_len)[:, None] + offset
            )
            allowed = allowed[None, None, :, :]
            keep = allowed if keep is None else ops.logical_and(keep, allowed)
        if keep is not None:
            logits = ops.where(keep, logits, -1e9)
        weights = ops.softmax(logits, axis=-1)
        if keep is not None:
            # exp(-1e9 - max) is already 0; this also zeroes fully padded rows.
            weights = weights * ops.cast(keep, "float32")
        weights = ops.cast(weights, self.compute_dtype)
        dropped = self.attention_dropout(weights, training=training)
        heads = ops.einsum("bhqs,bshv->bqhv", dropped, v)  # Eq. 1: A V_beta
        out = ops.einsum("bqhv,hvo->bqo", heads, self.output_kernel)  # W_O
        if self.output_bias is not None:
            out = out + self.output_bias
        if return_attention_scores:
            return out, weights
        return out

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shape):
        target_shape, source_shape = validate_target_source(self, input_shape)
        _, _, output_dim = self._dims(target_shape, source_shape)
        return target_shape[:2] + (output_dim,)

    def compute_output_spec(
        self, inputs, mask=None, training=None, return_attention_scores=False
    ):
        target, source = inputs
        shape = self.compute_output_shape([target.shape, source.shape])
        out = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if return_attention_scores:
            scores = keras.KerasTensor(
                (target.shape[0], self.num_heads, target.shape[1], source.shape[1]),
                dtype=self.compute_dtype,
            )
            return out, scores
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_dim": self.output_dim,
            "dropout": self.dropout,
            "use_causal_mask": self.use_causal_mask,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "seed": self.seed,
        }
