import keras
import numpy as np
from keras import ops

from mmfusion_keras.layers import GatedMultimodalUnit
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

X1 = np.arange(6, dtype="float32").reshape(2, 3)


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, "GatedMultimodalUnit")


def gmu_reference(xs, kernels, biases, gate_kernel, gate_bias):
    """NumPy GMU generalised to n modalities (softmax gates over modalities)."""
    n, units = len(xs), kernels[0].shape[1]
    hidden = np.stack([np.tanh(x @ w + b) for x, w, b in zip(xs, kernels, biases)], 1)
    logits = (np.concatenate(xs, -1) @ gate_kernel + gate_bias).reshape(-1, n, units)
    gates = np.exp(logits - logits.max(1, keepdims=True))
    gates /= gates.sum(1, keepdims=True)
    return (gates * hidden).sum(1), gates


def _set_weights(layer, kernels, biases, gate_kernel, gate_bias):
    for var, value in zip(layer.kernels, kernels):
        var.assign(value)
    for var, value in zip(layer.biases, biases):
        var.assign(value)
    layer.gate_kernel.assign(gate_kernel)
    if layer.gate_bias is not None:
        layer.gate_bias.assign(gate_bias)


def _random_params(widths, units, rng):
    kernels = [rng.standard_normal((d, units)).astype("float32") for d in widths]
    biases = [rng.standard_normal(units).astype("float32") for _ in widths]
    gate_kernel = rng.standard_normal((sum(widths), len(widths) * units))
    gate_bias = rng.standard_normal(len(widths) * units)
    return kernels, biases, gate_kernel.astype("float32"), gate_bias.astype("float32")


def test_conformance():
    run_layer_conformance(
        GatedMultimodalUnit,
        {"units": 4},
        [(None, 3), (None, 5), (None, 2)],
        expected_output_shape=(None, 4),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(lambda: GatedMultimodalUnit(units=4))
        + [
            (
                "units=0",
                lambda: GatedMultimodalUnit(units=0),
                r"invalid value for argument `units`, expected a positive "
                r"integer. Received: units=0",
            ),
            (
                "units=2.5",
                lambda: GatedMultimodalUnit(units=2.5),
                r"argument `units`.*Received: units=2.5",
            ),
        ],
    )


def test_matches_numpy_reference_three_modalities():
    rng = np.random.default_rng(0)
    widths, units = [3, 5, 2], 4
    xs = [rng.standard_normal((6, d)).astype("float32") for d in widths]
    params = _random_params(widths, units, rng)
    layer = GatedMultimodalUnit(units=units)
    layer.build([x.shape for x in xs])
    _set_weights(layer, *params)
    outputs, gates = layer(xs, return_gates=True)
    expected, expected_gates = gmu_reference(xs, *params)
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), expected, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(gates), expected_gates, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(gates).sum(1), 1.0, atol=1e-5)
    # The default call returns the same fused tensor alone.
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(xs)), ops.convert_to_numpy(outputs), atol=1e-6
    )


def test_two_modalities_equal_the_papers_sigmoid_form():
    # Arevalo et al. Eq. 1-4 (no biases): z = sigmoid(W_z [x_v; x_t]),
    # h = z * tanh(W_v x_v) + (1 - z) * tanh(W_t x_t). The softmax gates of
    # this layer give it with W_z = W_z1 - W_z2.
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((5, 3)).astype("float32")
    xt = rng.standard_normal((5, 4)).astype("float32")
    units = 6
    wv = rng.standard_normal((3, units)).astype("float32")
    wt = rng.standard_normal((4, units)).astype("float32")
    gate_kernel = rng.standard_normal((7, 2 * units)).astype("float32")
    layer = GatedMultimodalUnit(units=units, use_bias=False)
    layer.build([xv.shape, xt.shape])
    _set_weights(layer, [wv, wt], [], gate_kernel, None)
    assert [w.name for w in layer.trainable_weights] == [
        "kernel_0",
        "kernel_1",
        "gate_kernel",
    ]
    w_z = gate_kernel[:, :units] - gate_kernel[:, units:]
    z = 1.0 / (1.0 + np.exp(-(np.concatenate([xv, xt], -1) @ w_z)))
    expected = z * np.tanh(xv @ wv) + (1 - z) * np.tanh(xt @ wt)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer([xv, xt])), expected, atol=1e-5
    )


def test_return_gates_symbolic_and_mixed_precision():
    inputs = [keras.Input((3,)), keras.Input((5,)), keras.Input((2,))]
    layer = GatedMultimodalUnit(units=4)
    outputs, gates = layer(inputs, return_gates=True)
    assert tuple(outputs.shape) == (None, 4)
    assert tuple(gates.shape) == (None, 3, 4)

    mp_layer = GatedMultimodalUnit(units=4, dtype="mixed_float16")
    data = [np.ones((2, 3), "float32"), np.ones((2, 5), "float32")]
    out, z = mp_layer(data, return_gates=True)
    spec_out, spec_z = mp_layer.compute_output_spec(
        [keras.KerasTensor(x.shape) for x in data], return_gates=True
    )
    assert keras.backend.standardize_dtype(out.dtype) == spec_out.dtype == "float16"
    assert keras.backend.standardize_dtype(z.dtype) == spec_z.dtype == "float16"
    assert tuple(z.shape) == tuple(spec_z.shape) == (2, 2, 4)


def test_invalid_units_message():
    assert_raises_with_message(
        lambda: GatedMultimodalUnit(units=-3),
        r"^Received an invalid value for argument `units`, expected a positive "
        r"integer. Received: units=-3$",
    )
