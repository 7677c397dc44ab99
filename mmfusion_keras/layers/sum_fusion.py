import functools

import keras
from keras import ops

from mmfusion_keras.layers.elementwise_fusion import _DOC_TEMPLATE
from mmfusion_keras.layers.elementwise_fusion import ElementwiseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class SumFusion(ElementwiseFusion):
    __doc__ = _DOC_TEMPLATE.format(what="sum", cls="SumFusion")

    def _combine(self, tensors):
        return functools.reduce(ops.add, tensors)
