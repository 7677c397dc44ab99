import keras
from keras import ops

_PROJECTIONS = ("matrix", "vector")


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class FeatureSelfAttention(keras.layers.Layer):
    """Self-attention over the features of a vector (MBAF's Eq. 5-6).

    Each feature of the input vector `b` is scored against an attentive
    vector `b_hat`, the scores are normalized with a softmax over the
    features (Eq. 5), and the features are re-weighted by their attention
    (Eq. 6):

        e_i = b_i * b_hat_i,      alpha = softmax(e)          (Eq. 5)
        c   = alpha * b           (element-wise)              (Eq. 6)
        c   = u * alpha * b       (with rescale=True, u = width)

    `b_hat` is either computed from the whole vector, `b_hat = b W_a` with
    a `u x u` matrix `W_a` (`projection="matrix"`, the default), or is a
    learned vector of `u` weights (`projection="vector"`: the paper calls
    `b_hat` "the attentive vector", and MBAF's parameter counts in Table 3
    leave no room for a `u x u` matrix; see `MemoryBasedAttentiveFusion`).
    The vector starts at zero, i.e. with uniform attention.

    Reading of the paper (Priyasad et al. 2021 leave the shapes open):
    Eq. 6 writes `c = sum_i alpha_i b`, which taken literally returns `b`
    since the weights sum to one; the text says the attention "filters
    uninformative features", so the sum is read as element-wise
    re-weighting `c_i = alpha_i b_i`. We tried rescaling `c` by the width
    `u` (so that uniform attention is the identity): inside MBAF that
    amplifies the memory's feedback loop (read -> compose -> write) and the
    memory diverged within one epoch on Digits-Views with a matrix `W_a`,
    so `c` is not rescaled by default; the following Dense layer learns the
    scale. `rescale=True` multiplies `c` by `u`, so that uniform attention
    is the identity (`c = b`) instead of dividing `b` by `u`.

    The same layer is used on its own for the "self attention" blocks of the
    paper's MBAF-II / MBAF-III networks.

    Args:
        use_bias: whether the attentive projection `W_a` has a bias.
            Default False. Only with `projection="matrix"`.
        kernel_initializer: initializer of `W_a`. Default "glorot_uniform".
        projection: `"matrix"` (`b_hat = b W_a`, default) or `"vector"`
            (`b_hat` a learned vector, initialized to zeros).
        rescale: bool, multiply `c` by the width `u`. Default False.
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

    def __init__(
        self,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        projection="matrix",
        rescale=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection not in _PROJECTIONS:
            raise ValueError(
                "Received an invalid value for argument `projection`, expected "
                f"one of {_PROJECTIONS}. Received: projection={projection!r}"
            )
        if not isinstance(rescale, bool):
            raise ValueError(
                "Received an invalid value for argument `rescale`, expected a "
                f"bool. Received: rescale={rescale!r}"
            )
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.projection = projection
        self.rescale = rescale

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Layer {self.__class__.__name__} (name={self.name!r}) expects "
                "an input of rank >= 2 with a known last dimension "
                f"(batch, ..., features). Received shape {tuple(input_shape)}."
            )
        if self.projection == "vector":
            self.attentive_vector = self.add_weight(
                shape=(input_shape[-1],),
                name="attentive_vector",
                initializer="zeros",
            )
            return
        self.attentive_projection = keras.layers.Dense(
            input_shape[-1],
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="attentive_projection",
        )
        self.attentive_projection.build(input_shape)

    def call(self, inputs, return_attention_scores=False):
        if self.projection == "vector":
            b_hat = ops.cast(self.attentive_vector, inputs.dtype)
        else:
            b_hat = self.attentive_projection(inputs)
        scores = inputs * b_hat  # Eq. 5: e_i = b_i * b_hat_i
        alpha = ops.softmax(scores, axis=-1)  # Eq. 5
        outputs = alpha * inputs  # Eq. 6 (element-wise, see docstring)
        if self.rescale:
            outputs = outputs * ops.cast(ops.shape(inputs)[-1], outputs.dtype)
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
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "projection": self.projection,
            "rescale": self.rescale,
        }
