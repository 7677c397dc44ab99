"""Losses and correlation objectives."""

from mmfusion_keras.losses.dcca import canonical_correlations
from mmfusion_keras.losses.dcca import generalized_canonical_correlation
from mmfusion_keras.losses.dcca import multiview_canonical_correlation
from mmfusion_keras.losses.dcca import total_canonical_correlation

__all__ = [
    "canonical_correlations",
    "generalized_canonical_correlation",
    "multiview_canonical_correlation",
    "total_canonical_correlation",
]
