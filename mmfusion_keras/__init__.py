"""mmfusion-keras: multimodal fusion layers for Keras 3.

Layers are written with `keras.ops` only and run on TensorFlow, JAX and
PyTorch (choose with `KERAS_BACKEND` before Keras is imported).

Importing the package registers every layer for `.keras` loading, so
`import mmfusion_keras` is all `keras.saving.load_model` needs.
"""

import importlib

from mmfusion_keras import layers
from mmfusion_keras import models

__version__ = "0.1.0"

_LAZY_SUBMODULES = (
    "callbacks",
    "datasets",
    "inspection",
    "losses",
    "search",
    "tasks",
    "testing",
)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"mmfusion_keras.{name}")
    raise AttributeError(f"module 'mmfusion_keras' has no attribute {name!r}")
