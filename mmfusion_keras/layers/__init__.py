"""Fusion layers. Every class listed in `__all__` passes the conformance check."""

from mmfusion_keras.layers.canonical_correlation_loss import CanonicalCorrelationLoss
from mmfusion_keras.layers.canonical_projection import CanonicalProjection
from mmfusion_keras.layers.compact_bilinear_pooling import CompactBilinearPooling
from mmfusion_keras.layers.concatenate_fusion import ConcatenateFusion
from mmfusion_keras.layers.conv_lstm import ConvLSTM
from mmfusion_keras.layers.cross_modal_attention import CrossModalAttention
from mmfusion_keras.layers.cross_modal_transformer_block import (
    CrossModalTransformerBlock,
)
from mmfusion_keras.layers.delta_self_attention import DeltaSelfAttention
from mmfusion_keras.layers.dual_memory_fusion import DualMemoryFusion
from mmfusion_keras.layers.feature_self_attention import FeatureSelfAttention
from mmfusion_keras.layers.gated_multimodal_unit import GatedMultimodalUnit
from mmfusion_keras.layers.late_fusion import LateFusion
from mmfusion_keras.layers.low_rank_tensor_fusion import LowRankTensorFusion
from mmfusion_keras.layers.memory_based_attentive_fusion import (
    MemoryBasedAttentiveFusion,
)
from mmfusion_keras.layers.multimodal_conv_lstm import MultimodalConvLSTM
from mmfusion_keras.layers.product_fusion import ProductFusion
from mmfusion_keras.layers.sinc_conv1d import SincConv1D
from mmfusion_keras.layers.sinusoidal_position_embedding import (
    SinusoidalPositionEmbedding,
)
from mmfusion_keras.layers.sum_fusion import SumFusion
from mmfusion_keras.layers.tensor_fusion import TensorFusion
from mmfusion_keras.layers.top_k_pooling import TopKPooling

__all__ = [
    "CanonicalCorrelationLoss",
    "CanonicalProjection",
    "CompactBilinearPooling",
    "ConcatenateFusion",
    "ConvLSTM",
    "CrossModalAttention",
    "CrossModalTransformerBlock",
    "DeltaSelfAttention",
    "DualMemoryFusion",
    "FeatureSelfAttention",
    "GatedMultimodalUnit",
    "LateFusion",
    "LowRankTensorFusion",
    "MemoryBasedAttentiveFusion",
    "MultimodalConvLSTM",
    "ProductFusion",
    "SincConv1D",
    "SinusoidalPositionEmbedding",
    "SumFusion",
    "TensorFusion",
    "TopKPooling",
]
