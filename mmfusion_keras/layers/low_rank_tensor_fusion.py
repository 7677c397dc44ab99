import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class LowRankTensorFusion(BaseFusion):
    """Low-rank multimodal fusion (LMF) with modality-specific factors.

    Tensor fusion (`TensorFusion`) followed by a linear layer computes
    `h = W . Z + b` with `Z = [x_1; 1] (x) ... (x) [x_n; 1]` (Eq. 1-2), whose
    weight tensor `W` has `prod(d_i + 1) * units` entries. LMF constrains `W`
    to rank `r`, a sum of `r` outer products of modality-specific factors
    `W_i^(k)` of shape `(d_i + 1, units)` (Eq. 3). The outer product then
    never has to be formed: contracting each factor with its own modality
    and multiplying the results element-wise gives the same output (Eq. 4-6):

        W   = sum_k w_k (W_1^(k) (x) ... (x) W_n^(k))        (Eq. 3)
        h   = sum_k w_k prod_i ([x_i; 1] W_i^(k)) + b        (Eq. 4-6)

    The cost is linear in the number of modalities instead of exponential.

    Reading of the paper: its final formula writes the element-wise product
    over modalities *outside* the sum over ranks, `prod_i sum_k (...)`,
    which is not equal to the rank-r weight of Eq. 3 for `r > 1`. This layer
    implements the sum over ranks of the products, which is the
    decomposition of Eq. 3 exactly, and learns the rank weights `w_k` as
    the authors' released model does. With fixed weights, the layer equals
    `TensorFusion()` followed by a `Dense(units)` whose kernel is
    `sum_k w_k W_1^(k) (x) ... (x) W_n^(k)` flattened in row-major order.

    Args:
        units: positive int, output width. Default 64.
        rank: positive int, the rank `r` of the weight tensor. Default 4.
        use_bias: bool, whether to add the bias `b`. Default True.
        kernel_initializer: initializer of the factors, each stored as one
            weight of shape `(rank, d_i + 1, units)`. Default
            "glorot_uniform".
        rank_weights_initializer: initializer of the rank weights `w_k`,
            shape `(rank,)`. Default "ones".
        bias_initializer: initializer of `b`. Default "zeros".
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.

    Returns:
        A tensor of shape `(batch, units)`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import LowRankTensorFusion
    >>> lmf = LowRankTensorFusion(units=8, rank=2)
    >>> fused = lmf([np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 5))])
    >>> tuple(fused.shape)
    (2, 8)

    Reference:
        Liu, Shen, Lakshminarasimhan, Liang, Zadeh, Morency, "Efficient
        Low-rank Multimodal Fusion with Modality-Specific Factors", ACL 2018,
        Section 3 (Eq. 1-2: tensor fusion; Eq. 3: rank-r decomposition;
        Eq. 4-6: fusion with modality-specific factors).
    """

    def __init__(
        self,
        units=64,
        rank=4,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        rank_weights_initializer="ones",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (("units", units), ("rank", rank)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"Received an invalid value for argument `{arg}`, expected "
                    f"a positive integer. Received: {arg}={value}"
                )
        self.units = units
        self.rank = rank
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.rank_weights_initializer = keras.initializers.get(rank_weights_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        self.factors = [
            self.add_weight(
                shape=(self.rank, shape[-1] + 1, self.units),
                name=f"factor_{i}",
                initializer=self.kernel_initializer,
            )
            for i, shape in enumerate(shapes)
        ]
        self.rank_weights = self.add_weight(
            shape=(self.rank,),
            name="rank_weights",
            initializer=self.rank_weights_initializer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.units,), name="bias", initializer=self.bias_initializer
            )

    def call(self, inputs):
        product = None
        for x, factor in zip(inputs, self.factors):
            x1 = ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)  # [x_i; 1]
            projected = ops.einsum("bd,kdu->bku", x1, factor)  # [x_i; 1] W_i^(k)
            product = projected if product is None else product * projected
        # Eq. 4-6: sum_k w_k prod_i ([x_i; 1] W_i^(k)) + b
        outputs = ops.einsum("k,bku->bu", self.rank_weights, product)
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "rank": self.rank,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "rank_weights_initializer": keras.initializers.serialize(
                self.rank_weights_initializer
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
