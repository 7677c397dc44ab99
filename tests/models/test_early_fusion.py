import os

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import ConvLSTM
from mmfusion_keras.layers import MultimodalConvLSTM
from mmfusion_keras.models import build_early_fusion_model
from mmfusion_keras.testing import assert_raises_with_message

SIZES = {"image_shape": (4, 4, 1), "audio_shape": (3, 5), "units": 2, "dense_units": 4}
rng = np.random.default_rng(0)
X = {
    "image": rng.standard_normal((4, 4, 4, 1)).astype("float32"),
    "audio": rng.standard_normal((4, 3, 5)).astype("float32"),
}
Y = np.array([0, 1, 2, 3])


@pytest.fixture(scope="module")
def initial_model():
    """The "initial" model at test sizes, shared by the tests that only call it."""
    keras.utils.set_random_seed(0)
    return build_early_fusion_model("initial", **SIZES)


def _predict(model, x):
    # A direct call, not `predict`: the same outputs without compiling a
    # predict function (a scan over the recurrence) for every model.
    return ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize(
    "fusion,zero_input",
    [("initial", "audio"), ("second", None), ("fc", None)],
)
def test_build_fit_save_load(fusion, zero_input, tmp_path):
    model = build_early_fusion_model(fusion, zero_input=zero_input, **SIZES)
    assert model.name == f"{fusion}_fusion" + (
        f"_no_{zero_input}" if zero_input else ""
    )
    assert tuple(model.output.shape) == (None, 10)
    n_multimodal = sum(isinstance(layer, MultimodalConvLSTM) for layer in model.layers)
    assert n_multimodal == (0 if fusion == "fc" else 1)
    # One step: eager on TensorFlow and PyTorch (tracing a graph of three
    # recurrent models costs about 6x the eager step on TensorFlow); compiled
    # on JAX, where eager execution compiles every op (and the scan of every
    # call), about twice one compile of the train step. The compiled fit of
    # the recurrent layers is checked by their conformance tests.
    jax = keras.config.backend() == "jax"
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        jit_compile=jax,
        run_eagerly=not jax,
    )
    before = [ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.array_equal(b, ops.convert_to_numpy(w))
        for b, w in zip(before, model.trainable_weights)
    ]
    assert any(changed)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(_predict(restored, X), _predict(model, X), atol=1e-6)


def test_zeroed_input_is_ignored(initial_model):
    model = build_early_fusion_model("initial", zero_input="image", **SIZES)
    other = {**X, "image": rng.standard_normal((4, 4, 4, 1)).astype("float32")}
    np.testing.assert_allclose(_predict(model, other), _predict(model, X), atol=1e-6)
    # Without zeroing, the image does matter.
    full = initial_model
    assert not np.allclose(_predict(full, other), _predict(full, X))


def test_models_saved_with_keras_conv_lstm_2d_still_load(initial_model, tmp_path):
    # The second C-LSTM of the "initial" model was keras.layers.ConvLSTM2D
    # before ConvLSTM: such files load, and their weights fit a new model.
    model = initial_model

    def with_keras_conv_lstm(layer):
        if isinstance(layer, ConvLSTM):
            return keras.layers.ConvLSTM2D(
                layer.filters, layer.cell.kernel_size, padding="same", name=layer.name
            )
        return layer.__class__.from_config(layer.get_config())

    old = keras.models.clone_model(model, clone_function=with_keras_conv_lstm)
    assert isinstance(old.get_layer("clstm_2"), keras.layers.ConvLSTM2D)
    old.set_weights(model.get_weights())
    path = os.path.join(tmp_path, "old.keras")
    old.save(path)
    restored = keras.saving.load_model(path, compile=False)
    assert isinstance(restored.get_layer("clstm_2"), keras.layers.ConvLSTM2D)
    np.testing.assert_allclose(_predict(restored, X), _predict(model, X), atol=1e-5)
    model.set_weights(restored.get_weights())  # same shapes in the same order


def test_paper_sizes_are_the_defaults():
    model = build_early_fusion_model("initial")
    assert model.get_layer("multimodal_clstm").cell.filters == 64
    assert isinstance(model.get_layer("clstm_2"), ConvLSTM)
    assert model.get_layer("clstm_2").filters == 64
    assert model.get_layer("dense").units == 128
    assert tuple(model.inputs[0].shape) in {(None, 8, 8, 1), (None, 79, 201)}
    assert model.get_layer("flatten").output.shape[-1] == 2 * 2 * 64


def test_bad_arguments():
    assert_raises_with_message(
        lambda: build_early_fusion_model("late"),
        r"`fusion`, expected one of \('initial', 'second', 'fc'\). "
        r"Received: fusion='late'",
    )
    assert_raises_with_message(
        lambda: build_early_fusion_model(zero_input="text"),
        r"`zero_input`.*Received: zero_input='text'",
    )
    assert_raises_with_message(
        lambda: build_early_fusion_model(units=0),
        r"`units`, expected a positive integer. Received: units=0",
    )
    assert_raises_with_message(
        lambda: build_early_fusion_model(audio_shape=(79,)),
        r"`audio_shape`, expected 2 positive integers.*Received: audio_shape=\(79,\)",
    )
    assert_raises_with_message(
        lambda: build_early_fusion_model(image_shape=(3, 3, 1)),
        r"image of 3x3 is too small for 2 max pooling\(s\) of size 2",
    )
