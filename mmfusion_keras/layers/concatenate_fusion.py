import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class ConcatenateFusion(BaseFusion):
    """Naive fusion by concatenation of modality vectors.

    The baseline every paper in this library compares against ("NF" in
    Priyasad et al. 2021): the modality vectors are joined along the feature
    axis. It has no weights.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.

    Returns:
        A tensor of shape `(batch, sum(d_i))`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import ConcatenateFusion
    >>> fused = ConcatenateFusion()([np.ones((2, 3)), np.zeros((2, 4))])
    >>> tuple(fused.shape)
    (2, 7)

    Reference:
        Priyasad et al., "Memory Based Fusion for Multi-modal Deep Learning",
        Information Fusion 2021 (naive fusion, NF).
    """

    def build(self, input_shape):
        self._validate_input_shapes(input_shape)

    def call(self, inputs):
        return ops.concatenate(list(inputs), axis=-1)

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], sum(s[-1] for s in shapes))
