"""Test helpers for mmfusion_keras layers (usable for your own layers too)."""

from mmfusion_keras.testing.conformance import assert_raises_with_message
from mmfusion_keras.testing.conformance import fusion_input_error_cases
from mmfusion_keras.testing.conformance import infer
from mmfusion_keras.testing.conformance import random_inputs
from mmfusion_keras.testing.conformance import run_layer_conformance
from mmfusion_keras.testing.conformance import trainable_gradients
