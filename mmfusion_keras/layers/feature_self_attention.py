import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class FeatureSelfAttention(keras.layers.Layer):
    """Self-attention over the features of a vector (MBAF's Eq. 5-6).

    Each feature of the input vector `b` is scored against an attentive
    vector `b_hat = b W_a` computed from the whole vector, the scores are
    normalized with a softmax over the features (Eq. 5), and the features
    are re-weighted by their attention (Eq. 6):

        e_i = b_i * b_hat_i,      alpha = softmax(e)          (Eq. 5)
        c   = alpha * b           (element-wise)              (Eq. 6)

    Reading of the paper (Priyasad et al. 2021 leave the shapes open):
    Eq. 6 writes `c = sum_i alpha_i b`, which taken literally returns `b`
    since the weights sum to one; the text says the attention "filters
    uninformative features", so the sum is read as element-wise
    re-weighting `c_i = alpha_i b_i`. We tried rescaling `c` by the width
    `u` (so that uniform attention is the identity): inside MBAF that
    amplifies the memory's feedback loop (read -> compose -> write) and the
    memory diverged within one epoch on Digits-Views, so `c` is not
    rescaled; the following Dense layer learns the scale.

    The same layer is used on its own for the "self attention" blocks of the
    paper's MBAF-II / MBAF-III networks.

    Args:
        use_bias: whether the attentive projection `W_a` has a bias.
            Default False.
        kernel_initializer: initializer of `W_a`. Default "glorot_uniform".
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(..., u)`; attention runs over the last axis.
        return_attention_scores: bool; also return `alpha`. Default False.

    Returns:
        `c` with the input's shape, or `(c, alpha)` when
        `return_attention_scores=True`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import FeatureSelfAttention
    >>> c, alpha = FeatureSelfAttention()(
    ...     np.ones((2, 6), "float32"), return_attention_scores=True)
    >>> tuple(c.shape), tuple(alpha.shape)
    ((2, 6), (2, 6))

    Reference:
        Priyasad, Fernando, Denman, Sridharan, Fookes, "Memory Based Fusion
        for Multi-modal Deep Learning", Information Fusion 2021, Eq. 5-6.
    """

    def __init__(self, use_bias=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Layer {self.__class__.__name__} (name={self.name!r}) expects "
                "an input of rank >= 2 with a known last dimension "
                f"(batch, ..., features). Received shape {tuple(input_shape)}."
            )
        self.attentive_projection = keras.layers.Dense(
            input_shape[-1],
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="attentive_projection",
        )
        self.attentive_projection.build(input_shape)

    def call(self, inputs, return_attention_scores=False):
        b_hat = self.attentive_projection(inputs)
        scores = inputs * b_hat  # Eq. 5: e_i = b_i * b_hat_i
        alpha = ops.softmax(scores, axis=-1)  # Eq. 5
        outputs = alpha * inputs  # Eq. 6 (element-wise, see docstring)
        if return_attention_scores:
            return outputs, alpha
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False):
        spec = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if return_attention_scores:
            return spec, keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        return spec

    def get_config(self):
        return {
            **super().get_config(),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
        }
