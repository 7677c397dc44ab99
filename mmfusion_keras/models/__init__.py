"""Model builders composed with the functional API."""

from mmfusion_keras.models.dual_memory_network import build_dual_memory_network
from mmfusion_keras.models.dual_memory_network import build_wav2vec2_style_encoder
from mmfusion_keras.models.early_fusion import build_early_fusion_model
from mmfusion_keras.models.fusion_classifier import build_fusion_classifier
from mmfusion_keras.models.hierarchical_delta_attention import (
    build_hierarchical_delta_attention_model,
)
from mmfusion_keras.models.hierarchical_delta_attention import (
    fit_hierarchical_stagewise,
)
from mmfusion_keras.models.mbaf_networks import build_iemocap_audio_encoder
from mmfusion_keras.models.mbaf_networks import build_iemocap_network
from mmfusion_keras.models.mbaf_networks import build_iemocap_text_encoder
from mmfusion_keras.models.mbaf_networks import build_physionet_network
from mmfusion_keras.models.mult import build_mult_model
from mmfusion_keras.models.task_models import build_audio_encoder
from mmfusion_keras.models.task_models import build_av_digits_model
from mmfusion_keras.models.task_models import build_speech_text_model
