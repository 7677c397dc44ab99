"""Model builders composed with the functional API."""

from mmfusion_keras.models.fusion_classifier import build_fusion_classifier
