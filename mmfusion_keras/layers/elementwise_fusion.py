"""Element-wise naive fusion (sum and product) with optional projection."""

import keras

from mmfusion_keras.layers.base_fusion import BaseFusion


class ElementwiseFusion(BaseFusion):
    """Shared implementation of `SumFusion` and `ProductFusion`.

    Subclasses set `_combine(tensors)`.
    """

    def __init__(
        self,
        projection_units=None,
        projection_activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection_units is not None and (
            not isinstance(projection_units, int) or projection_units <= 0
        ):
            raise ValueError(
                "Received an invalid value for argument `projection_units`, "
                "expected a positive integer or None. "
                f"Received: projection_units={projection_units}"
            )
        self.projection_units = projection_units
        self.projection_activation = keras.activations.get(projection_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _check_widths(self, shapes):
        if self.projection_units is None:
            widths = [s[-1] for s in shapes]
            if len(set(widths)) > 1:
                raise ValueError(
                    f"{self._describe()} combines modalities element-wise, so "
                    "their widths must be equal when `projection_units` is "
                    f"None. Received widths {widths}. Set "
                    "`projection_units=<int>` to project every modality to a "
                    "common width first."
                )

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        self.projections = []
        if self.projection_units is not None:
            for i, shape in enumerate(shapes):
                dense = keras.layers.Dense(
                    self.projection_units,
                    activation=self.projection_activation,
                    kernel_initializer=self.kernel_initializer,
                    dtype=self.dtype_policy,
                    name=f"projection_{i}",
                )
                dense.build(shape)
                self.projections.append(dense)

    def call(self, inputs):
        inputs = list(inputs)
        if self.projections:
            inputs = [proj(x) for proj, x in zip(self.projections, inputs)]
        return self._combine(inputs)

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        width = self.projection_units or shapes[0][-1]
        return (shapes[0][0], width)

    def get_config(self):
        return {
            **super().get_config(),
            "projection_units": self.projection_units,
            "projection_activation": keras.activations.serialize(
                self.projection_activation
            ),
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
        }


_DOC_TEMPLATE = """Naive fusion by element-wise {what} of modality vectors.

    With `projection_units=None`, all modalities must have the same width
    and the layer has no weights. With `projection_units=u`, each modality
    first goes through its own `Dense(u)` (with `projection_activation`),
    which lets modalities of different widths be fused.

    Args:
        projection_units: int or None. Common width to project every
            modality to before fusing. Default None (no projection).
        projection_activation: activation of the projections. Default None.
        kernel_initializer: initializer of the projection kernels.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.

    Returns:
        A tensor of shape `(batch, d)`, with `d = projection_units` or the
        common input width.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import {cls}
    >>> fused = {cls}(projection_units=8)([np.ones((2, 3)), np.ones((2, 5))])
    >>> tuple(fused.shape)
    (2, 8)

    Reference:
        Baltrusaitis, Ahuja and Morency, "Multimodal Machine Learning: A
        Survey and Taxonomy", IEEE TPAMI 2019 (early fusion baselines).
    """
