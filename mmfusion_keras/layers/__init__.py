"""Fusion layers. Every class listed in `__all__` passes the conformance check."""

from mmfusion_keras.layers.concatenate_fusion import ConcatenateFusion
from mmfusion_keras.layers.feature_self_attention import FeatureSelfAttention
from mmfusion_keras.layers.memory_based_attentive_fusion import (
    MemoryBasedAttentiveFusion,
)
from mmfusion_keras.layers.product_fusion import ProductFusion
from mmfusion_keras.layers.sum_fusion import SumFusion

__all__ = [
    "ConcatenateFusion",
    "FeatureSelfAttention",
    "MemoryBasedAttentiveFusion",
    "ProductFusion",
    "SumFusion",
]
