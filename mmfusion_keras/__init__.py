"""mmfusion-keras: multimodal fusion layers for Keras 3.

Layers are written with `keras.ops` only and run on TensorFlow, JAX and
PyTorch (choose with `KERAS_BACKEND` before Keras is imported).

Submodules are imported on first use, so `mmfusion_keras.cli` can choose
the backend before Keras is imported.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("layers", "models", "datasets", "losses", "search", "testing")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"mmfusion_keras.{name}")
    raise AttributeError(f"module 'mmfusion_keras' has no attribute {name!r}")
