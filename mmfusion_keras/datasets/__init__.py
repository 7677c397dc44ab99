"""Bundled datasets and loaders for the datasets users bring."""

from mmfusion_keras.datasets.digits_views import load_digits_views
