import keras

from mmfusion_keras.layers.cross_modal_attention import CrossModalAttention
from mmfusion_keras.layers.cross_modal_attention import validate_target_source
from mmfusion_keras.layers.cross_modal_attention import validate_target_source_call


def _seed(seed, offset):
    return None if seed is None else seed + offset


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class CrossModalTransformerBlock(keras.layers.Layer):
    """One MulT layer: cross-modal attention and a feed-forward network.

    Layer `i` of the cross-modal transformer `beta -> alpha` (MulT, Eq. 6-8
    of the paper). With `LN` layer normalization, `Z` the target stream
    and `S = Z_beta^[0]` the source sequence:

        Z_hat = CMA(LN(Z), LN(S)) + R(Z)                          (Eq. 7)
        Z'    = FF(LN(Z_hat)) + R(Z_hat)                          (Eq. 8)
        FF(u) = W_2 dropout(ReLU(W_1 u + b_1)) + b_2

    where `CMA` is `CrossModalAttention` (Eq. 1-3). The paper and the MulT
    paper write the residual as `R(Z) = LN(Z)`; MulT's public code adds the
    un-normalized input, `R(Z) = Z` (a pre-norm Transformer). The default
    follows the code (`residual_from_normalized=False`), which trains
    stably in deep stacks; set it to true for the equations as written.
    Dropout follows the code too: attention-weight dropout, dropout after
    the ReLU, and dropout on each branch before its residual sum.

    Pass the same sequence as target and source for a self-attention
    Transformer layer (MulT's final per-modality transformers). The target
    and source get their own layer norms (MulT's code shares one, which
    requires equal widths).

    Args:
        num_heads: number of attention heads.
        key_dim: per-head query/key width; default `d_target // num_heads`.
        feedforward_dim: hidden width of `FF`; default `4 * d_target`.
        attention_dropout: dropout rate of the attention weights.
        use_causal_mask: if true, MulT's (shifted) causal attention mask
            (see `CrossModalAttention`). Default False.
        relu_dropout: dropout rate after the ReLU of `FF`.
        residual_dropout: dropout rate of each branch before its residual.
        residual_from_normalized: if true, `R = LN` as in Eq. 7-8; if false
            (default), `R = identity` as in MulT's code.
        epsilon: layer-norm epsilon.
        seed: seed of the dropouts.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: list `[target, source]`, `(batch, T_alpha, d_alpha)` and
            `(batch, T_beta, d_beta)` float tensors.
        mask: optional list `[target_mask, source_mask]` of `(batch, T)`
            boolean masks (entries may be None); padded source steps get
            zero attention weight.
        training: Python bool, enables dropout.

    Returns:
        `(batch, T_alpha, d_alpha)`: the updated target stream.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import CrossModalTransformerBlock
    >>> language = np.random.rand(2, 5, 8).astype("float32")
    >>> audio = np.random.rand(2, 7, 6).astype("float32")
    >>> block = CrossModalTransformerBlock(num_heads=2)
    >>> tuple(block([language, audio]).shape)
    (2, 5, 8)

    Reference:
        Tsai et al., Multimodal Transformer for Unaligned Multimodal Language
        Sequences (MulT), ACL 2019, section 3.2; restated in Panchal,
        Hierarchical Delta-Attention Method for Multimodal Fusion, Eq. 6-8.
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        feedforward_dim=None,
        attention_dropout=0.1,
        relu_dropout=0.1,
        residual_dropout=0.1,
        use_causal_mask=False,
        residual_from_normalized=False,
        epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        if feedforward_dim is not None and (
            isinstance(feedforward_dim, bool)
            or not isinstance(feedforward_dim, int)
            or feedforward_dim < 1
        ):
            raise ValueError(
                f"Layer {self.__class__.__name__}: received an invalid value "
                "for argument `feedforward_dim`, expected a positive integer "
                f"or None. Received: feedforward_dim={feedforward_dim!r}"
            )
        for name, rate in (
            ("relu_dropout", relu_dropout),
            ("residual_dropout", residual_dropout),
        ):
            if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
                raise ValueError(
                    f"Layer {self.__class__.__name__}: received an invalid "
                    f"value for argument `{name}`, expected a number in "
                    f"[0, 1). Received: {name}={rate!r}"
                )
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.feedforward_dim = feedforward_dim
        self.attention_dropout = float(attention_dropout)
        self.relu_dropout = float(relu_dropout)
        self.residual_dropout = float(residual_dropout)
        self.use_causal_mask = bool(use_causal_mask)
        self.residual_from_normalized = bool(residual_from_normalized)
        self.epsilon = epsilon
        self.seed = seed
        # Validates num_heads, key_dim and attention_dropout.
        self.attention = CrossModalAttention(
            num_heads,
            key_dim=key_dim,
            dropout=attention_dropout,
            use_causal_mask=use_causal_mask,
            seed=_seed(seed, 0),
            name="attention",
            dtype=self.dtype_policy,
        )
        self.target_norm = keras.layers.LayerNormalization(
            epsilon=epsilon, name="target_norm", dtype=self.dtype_policy
        )
        self.source_norm = keras.layers.LayerNormalization(
            epsilon=epsilon, name="source_norm", dtype=self.dtype_policy
        )
        self.feedforward_norm = keras.layers.LayerNormalization(
            epsilon=epsilon, name="feedforward_norm", dtype=self.dtype_policy
        )
        self.attention_output_dropout = keras.layers.Dropout(
            residual_dropout, seed=_seed(seed, 1), dtype=self.dtype_policy
        )
        self.hidden_dropout = keras.layers.Dropout(
            relu_dropout, seed=_seed(seed, 2), dtype=self.dtype_policy
        )
        self.feedforward_output_dropout = keras.layers.Dropout(
            residual_dropout, seed=_seed(seed, 3), dtype=self.dtype_policy
        )
        self.feedforward_hidden = None
        self.feedforward_output = None

    def __call__(self, inputs, *args, **kwargs):
        validate_target_source_call(self, inputs, kwargs.get("mask"))
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        target_shape, source_shape = validate_target_source(self, input_shape)
        d = target_shape[-1]
        hidden = self.feedforward_dim or 4 * d
        self.feedforward_hidden = keras.layers.Dense(
            hidden,
            activation="relu",
            name="feedforward_hidden",
            dtype=self.dtype_policy,
        )
        self.feedforward_output = keras.layers.Dense(
            d, name="feedforward_output", dtype=self.dtype_policy
        )
        self.target_norm.build(target_shape)
        self.source_norm.build(source_shape)
        self.attention.build([target_shape, source_shape])
        self.feedforward_norm.build(target_shape)
        self.feedforward_hidden.build(target_shape)
        self.feedforward_output.build(target_shape[:2] + (hidden,))

    def call(self, inputs, mask=None, training=None):
        target, source = inputs
        normed_target = self.target_norm(target)
        normed_source = self.source_norm(source)
        attended = self.attention(
            [normed_target, normed_source], mask=mask, training=training
        )
        attended = self.attention_output_dropout(attended, training=training)
        residual = normed_target if self.residual_from_normalized else target
        z_hat = attended + residual  # Eq. 7
        normed = self.feedforward_norm(z_hat)
        hidden = self.hidden_dropout(self.feedforward_hidden(normed), training=training)
        ff = self.feedforward_output_dropout(
            self.feedforward_output(hidden), training=training
        )
        residual = normed if self.residual_from_normalized else z_hat
        return ff + residual  # Eq. 8

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shape):
        target_shape, _ = validate_target_source(self, input_shape)
        return target_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "feedforward_dim": self.feedforward_dim,
            "attention_dropout": self.attention_dropout,
            "relu_dropout": self.relu_dropout,
            "residual_dropout": self.residual_dropout,
            "use_causal_mask": self.use_causal_mask,
            "residual_from_normalized": self.residual_from_normalized,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }
