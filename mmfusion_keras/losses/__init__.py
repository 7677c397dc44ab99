"""Losses and correlation objectives."""

from mmfusion_keras.losses.dcca import canonical_correlations
from mmfusion_keras.losses.dcca import multiview_canonical_correlation
from mmfusion_keras.losses.dcca import total_canonical_correlation

__all__ = [
    "canonical_correlations",
    "multiview_canonical_correlation",
    "total_canonical_correlation",
]
