"""Multimodal fusion architecture search (MFAS, Perez-Rua et al., 2019)."""

from mmfusion_keras.search.final_training import finetune_multitask
from mmfusion_keras.search.final_training import train_final
from mmfusion_keras.search.fusion_architecture_search import FusionArchitectureSearch
from mmfusion_keras.search.fusion_architecture_search import train_fusion_head
from mmfusion_keras.search.fusion_network import build_feature_extractor
from mmfusion_keras.search.fusion_network import build_fusion_head
from mmfusion_keras.search.fusion_network import build_fusion_network
from mmfusion_keras.search.sampling import gaussian_temperature_at
from mmfusion_keras.search.sampling import sample_k
from mmfusion_keras.search.sampling import sampling_probabilities
from mmfusion_keras.search.sampling import temperature_at
from mmfusion_keras.search.search_space import SearchSpace
from mmfusion_keras.search.shared_fusion_weights import SharedFusionWeights
from mmfusion_keras.search.surrogate import Surrogate

__all__ = [
    "FusionArchitectureSearch",
    "SearchSpace",
    "SharedFusionWeights",
    "Surrogate",
    "build_feature_extractor",
    "build_fusion_head",
    "build_fusion_network",
    "finetune_multitask",
    "gaussian_temperature_at",
    "sample_k",
    "sampling_probabilities",
    "temperature_at",
    "train_final",
    "train_fusion_head",
]
