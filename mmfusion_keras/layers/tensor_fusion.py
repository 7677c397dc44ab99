import math

import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class TensorFusion(BaseFusion):
    """Tensor fusion (TFN): flattened outer product of the modality vectors.

    Each modality vector is extended with a constant 1 and the outer product
    of all of them is taken:

        z = [x_1; 1] (x) [x_2; 1] (x) ... (x) [x_n; 1]

    Because of the appended 1, the tensor holds the unimodal features
    themselves, every bimodal product `x_i[a] x_j[b]`, and so on up to the
    n-modal products (for three modalities: the paper's unimodal, bimodal
    and trimodal "dynamics"). It is flattened in row-major order (the first
    modality's index varies slowest; the constant 1 is the last entry of
    every factor), giving `prod(d_i + 1)` features. The layer has no
    weights; the paper feeds the result to fully connected layers.

    The width grows multiplicatively with the number and size of the
    modalities, so the layer refuses outputs wider than `max_output_dim`.

    Args:
        max_output_dim: positive int, the largest accepted output width
            `prod(d_i + 1)`. Default `2**20`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.

    Returns:
        A tensor of shape `(batch, prod(d_i + 1))`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import TensorFusion
    >>> fused = TensorFusion()([np.ones((2, 3)), np.ones((2, 4))])
    >>> tuple(fused.shape)
    (2, 20)

    Reference:
        Zadeh, Chen, Poria, Cambria, Morency, "Tensor Fusion Network for
        Multimodal Sentiment Analysis", EMNLP 2017, Section 3.2 (the tensor
        fusion layer, Eq. 1).
    """

    def __init__(self, max_output_dim=2**20, **kwargs):
        super().__init__(**kwargs)
        if (
            not isinstance(max_output_dim, int)
            or isinstance(max_output_dim, bool)
            or max_output_dim <= 0
        ):
            raise ValueError(
                "Received an invalid value for argument `max_output_dim`, "
                "expected a positive integer. "
                f"Received: max_output_dim={max_output_dim}"
            )
        self.max_output_dim = max_output_dim

    def _check_widths(self, shapes):
        widths = [s[-1] for s in shapes]
        output_dim = math.prod(w + 1 for w in widths)
        if output_dim > self.max_output_dim:
            raise ValueError(
                f"{self._describe()} would produce prod(d_i + 1) = {output_dim} "
                f"features for modality widths {widths}, more than "
                f"`max_output_dim={self.max_output_dim}`. Reduce the modality "
                "widths (e.g. with a Dense projection per modality), use "
                "`LowRankTensorFusion`, or raise `max_output_dim`."
            )

    def build(self, input_shape):
        self._validate_input_shapes(input_shape)

    def call(self, inputs):
        inputs = list(inputs)

        def with_one(x):
            return ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)

        # Eq. 1: z = [x_1; 1] (x) ... (x) [x_n; 1], built one factor at a time
        # and kept flat as (batch, prod_{j <= i}(d_j + 1)).
        fused = with_one(inputs[0])
        width = inputs[0].shape[-1] + 1
        for x in inputs[1:]:
            factor = with_one(x)
            width *= x.shape[-1] + 1
            fused = ops.reshape(
                ops.expand_dims(fused, -1) * ops.expand_dims(factor, 1), (-1, width)
            )
        return fused

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], math.prod(s[-1] + 1 for s in shapes))

    def get_config(self):
        return {**super().get_config(), "max_output_dim": self.max_output_dim}
