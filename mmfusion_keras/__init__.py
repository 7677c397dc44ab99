"""mmfusion-keras: multimodal fusion layers for Keras 3.

Layers are written with `keras.ops` only and run on TensorFlow, JAX and
PyTorch (choose with `KERAS_BACKEND`).
"""

from mmfusion_keras import layers
from mmfusion_keras import models

__version__ = "0.1.0"
