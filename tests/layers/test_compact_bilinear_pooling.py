import os

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import CompactBilinearPooling
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

X1 = np.arange(6, dtype="float32").reshape(2, 3)


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, "CompactBilinearPooling")


# --- NumPy reference: count sketch, then circular convolution (no FFT). ---


def count_sketch(x, hashes, signs, dim):
    out = np.zeros((x.shape[0], dim))
    for k in range(x.shape[1]):
        out[:, hashes[k]] += signs[k] * x[:, k]
    return out


def circular_convolution(a, b):
    dim = a.shape[-1]
    out = np.zeros_like(a)
    for m in range(dim):
        for j in range(dim):
            out[:, m] += a[:, j] * b[:, (m - j) % dim]
    return out


def cbp_reference(xs, hashes, signs, dim, normalize=False):
    out = count_sketch(xs[0], hashes[0], signs[0], dim)
    for x, h, s in zip(xs[1:], hashes[1:], signs[1:]):
        out = circular_convolution(out, count_sketch(x, h, s, dim))
    if normalize:
        out = np.sign(out) * np.sqrt(np.abs(out))
        out = out / np.linalg.norm(out, axis=-1, keepdims=True)
    return out


def _hashes_and_signs(layer):
    hashes = [ops.convert_to_numpy(v) for v in layer.hashes]
    signs = [ops.convert_to_numpy(v) for v in layer.signs]
    return hashes, signs


def test_conformance():
    run_layer_conformance(
        CompactBilinearPooling,
        {"output_dim": 16, "seed": 3},
        [(None, 3), (None, 5)],
        expected_output_shape=(None, 16),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=4,
        error_cases=_common_errors(CompactBilinearPooling)
        + [
            (
                "output_dim=0",
                lambda: CompactBilinearPooling(output_dim=0),
                r"invalid value for argument `output_dim`, expected a positive "
                r"integer. Received: output_dim=0",
            ),
            (
                "negative seed",
                lambda: CompactBilinearPooling(seed=-1),
                r"invalid value for argument `seed`, expected a non-negative "
                r"integer or None. Received: seed=-1",
            ),
        ],
    )


def test_conformance_normalized_three_modalities_unseeded():
    run_layer_conformance(
        CompactBilinearPooling,
        {"output_dim": 15, "normalize": True},
        [(None, 2), (None, 4), (None, 3)],
        expected_output_shape=(None, 15),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=6,
    )


@pytest.mark.parametrize(
    "widths, dim, normalize",
    [([3, 5], 16, False), ([3, 5], 16, True), ([2, 4, 3], 11, False)],
)
def test_matches_count_sketch_and_circular_convolution(widths, dim, normalize):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, d)).astype("float32") for d in widths]
    layer = CompactBilinearPooling(output_dim=dim, normalize=normalize, seed=5)
    out = ops.convert_to_numpy(layer(xs))
    hashes, signs = _hashes_and_signs(layer)
    for h, s, d in zip(hashes, signs, widths):
        assert h.shape == (d,) and h.min() >= 0 and h.max() < dim
        assert set(np.unique(s)) <= {-1.0, 1.0}
    expected = cbp_reference(xs, hashes, signs, dim, normalize)
    # The signed square root turns the float32 FFT round-off (~1e-7 of the
    # largest entry) on entries that are exactly zero into ~3e-4.
    atol = 1e-3 if normalize else 1e-4
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=atol)


def test_is_the_count_sketch_of_the_outer_product():
    # Tensor Sketch: conv(CS_1(x), CS_2(y)) == CS(x (x) y) with the hash
    # (h_1(j) + h_2(k)) mod D and the sign s_1(j) s_2(k).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)).astype("float32")
    y = rng.standard_normal((3, 6)).astype("float32")
    dim = 10
    layer = CompactBilinearPooling(output_dim=dim, seed=2)
    out = ops.convert_to_numpy(layer([x, y]))
    (h1, h2), (s1, s2) = _hashes_and_signs(layer)
    outer = np.einsum("bj,bk->bjk", x, y).reshape(3, -1)
    pair_hash = ((h1[:, None] + h2[None, :]) % dim).reshape(-1)
    pair_sign = (s1[:, None] * s2[None, :]).reshape(-1)
    np.testing.assert_allclose(
        out, count_sketch(outer, pair_hash, pair_sign, dim), rtol=1e-4, atol=1e-4
    )


def dense_formulation(xs, hashes, signs, dim):
    """The count sketch as a product with the dense `(d, D)` sketch matrix.

    This is what the layer computed before the sparse segment sum: each
    input times `one_hot(h, D) * s`, then the FFT product (NumPy, float64).
    """
    spectrum = None
    for x, h, s in zip(xs, hashes, signs):
        matrix = np.zeros((len(h), dim))  # (d, D): one_hot(h, D) * s
        matrix[np.arange(len(h)), h] = s
        f = np.fft.rfft(x.astype("float64") @ matrix, n=dim)
        spectrum = f if spectrum is None else spectrum * f
    return np.fft.irfft(spectrum, n=dim)


@pytest.mark.parametrize(
    "widths, dim", [([7, 5], 32), ([40, 3, 9], 24), ([300, 200], 8192)]
)
def test_sparse_sketch_equals_the_dense_formulation(widths, dim):
    # In every case some input features share a bucket (checked below),
    # which the segment sum must add up.
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((3, d)).astype("float32") for d in widths]
    layer = CompactBilinearPooling(output_dim=dim, seed=11)
    out = ops.convert_to_numpy(layer(xs))
    hashes, signs = _hashes_and_signs(layer)
    assert any(len(np.unique(h)) < len(h) for h in hashes)
    expected = dense_formulation(xs, hashes, signs, dim)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * scale)


def test_sparse_sketch_gradient_equals_the_dense_formulation():
    # d(sum(out * w)) / dx through the segment sum equals the dense
    # product's gradient, (g @ matrix.T), with g the FFT-side gradient.
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((2, d)).astype("float32") for d in (6, 4)]
    layer = CompactBilinearPooling(output_dim=8, seed=2)
    inputs = [keras.Input((6,)), keras.Input((4,))]
    model = keras.Model(inputs, layer(inputs))
    weights = rng.standard_normal((2, 8)).astype("float32")
    hashes, signs = _hashes_and_signs(layer)

    def numeric_grad(i, eps=1e-3):
        grad = np.zeros_like(xs[i], dtype="float64")
        for b in range(xs[i].shape[0]):
            for k in range(xs[i].shape[1]):
                plus = [x.astype("float64").copy() for x in xs]
                minus = [x.astype("float64").copy() for x in xs]
                plus[i][b, k] += eps
                minus[i][b, k] -= eps
                f_plus = np.sum(dense_formulation(plus, hashes, signs, 8) * weights)
                f_minus = np.sum(dense_formulation(minus, hashes, signs, 8) * weights)
                grad[b, k] = (f_plus - f_minus) / (2 * eps)
        return grad

    grads = _input_gradients(model, xs, weights)
    for i in range(2):
        np.testing.assert_allclose(grads[i], numeric_grad(i), rtol=1e-3, atol=1e-3)


def _input_gradients(model, xs, weights):
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        ts = [tf.constant(x) for x in xs]
        with tf.GradientTape() as tape:
            tape.watch(ts)
            loss = tf.reduce_sum(model(ts) * weights)
        return [g.numpy() for g in tape.gradient(loss, ts)]
    if backend == "jax":
        import jax

        # Jitted: one compile instead of one per op of the eager backward.
        grad = jax.jit(jax.grad(lambda ts: (model(ts) * weights).sum()))
        return [np.asarray(g) for g in grad([jax.numpy.asarray(x) for x in xs])]
    import torch

    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    (model(ts) * torch.tensor(weights)).sum().backward()
    return [t.grad.numpy() for t in ts]


def test_model_saved_with_the_dense_sketch_loads_and_gives_the_same_outputs():
    # Saved (JAX) by the previous version of the layer, which multiplied by
    # the dense (d, D) sketch matrix; the weights (hashes and signs) are
    # unchanged, so the file loads and gives the same features.
    here = os.path.join(os.path.dirname(__file__), "data")
    model = keras.saving.load_model(
        os.path.join(here, "compact_bilinear_pooling_dense_sketch.keras")
    )
    data = np.load(os.path.join(here, "compact_bilinear_pooling_dense_sketch.npz"))
    out = ops.convert_to_numpy(model([data["x0"], data["x1"]]))
    # normalize=True: the signed square root turns the FFT round-off on the
    # exactly-zero entries (which differs across backends) into ~1e-4.
    np.testing.assert_allclose(out, data["y"], rtol=1e-4, atol=1e-3)
    assert np.abs(data["y"]).max() > 0.3


# --- Against exact bilinear pooling: unbiased inner products. ---


def _pairs():
    rng = np.random.default_rng(42)
    x = rng.standard_normal(8)
    y = rng.standard_normal(6)
    x2 = x + 0.5 * rng.standard_normal(8)
    y2 = y + 0.5 * rng.standard_normal(6)
    exact = float(np.dot(x, x2) * np.dot(y, y2))  # <x (x) y, x' (x) y'>
    return x, y, x2, y2, exact


def _layer_estimate(x, y, x2, y2, dim, seed):
    layer = CompactBilinearPooling(output_dim=dim, seed=seed)
    phi = ops.convert_to_numpy(
        layer(
            [np.stack([x, x2]).astype("float32"), np.stack([y, y2]).astype("float32")]
        )
    ).astype("float64")
    return float(phi[0] @ phi[1])


def _numpy_estimator_std(x, y, x2, y2, dim, draws=2000):
    """Std of the sketch inner product over fresh random hashes (NumPy).

    Same construction as the layer (independent uniform hashes and signs
    per modality), the convolution through NumPy's FFT.
    """
    rng = np.random.default_rng(0)
    estimates = np.empty(draws)
    for t in range(draws):
        sketches = []
        for a, b in ((x, x2), (y, y2)):
            h = rng.integers(0, dim, a.size)
            s = 2.0 * rng.integers(0, 2, a.size) - 1
            sketches.append(np.fft.rfft(count_sketch(np.stack([a, b]), h, s, dim)))
        phi = np.fft.irfft(sketches[0] * sketches[1], n=dim)
        estimates[t] = phi[0] @ phi[1]
    return estimates.std(ddof=1), estimates.mean()


def test_inner_products_are_unbiased_estimates_of_bilinear_pooling():
    x, y, x2, y2, exact = _pairs()
    dim, num_seeds = 64, 20
    estimates = np.array(
        [_layer_estimate(x, y, x2, y2, dim, seed) for seed in range(num_seeds)]
    )
    sigma, mc_mean = _numpy_estimator_std(x, y, x2, y2, dim)
    # The NumPy construction itself is unbiased (its mean over 2000 draws is
    # within 4 standard errors of the exact value).
    assert abs(mc_mean - exact) < 4 * sigma / np.sqrt(2000)
    # The mean of 20 independent layers has standard error sigma / sqrt(20):
    # accept 4 standard errors (a false alarm has probability ~1e-4 under a
    # normal approximation), and check the tolerance is tight enough to
    # matter (well below the exact value).
    tolerance = 4 * sigma / np.sqrt(num_seeds)
    assert tolerance < 0.5 * abs(exact), (tolerance, exact)
    assert abs(estimates.mean() - exact) < tolerance, (estimates.mean(), exact)
    # The layers' spread matches the estimator's: the hashes are random.
    assert 0.5 * sigma < estimates.std(ddof=1) < 2 * sigma, (estimates.std(), sigma)


def test_large_sketch_is_close_for_one_seed():
    x, y, x2, y2, exact = _pairs()
    dim = 8192
    estimate = _layer_estimate(x, y, x2, y2, dim, seed=123)
    sigma, _ = _numpy_estimator_std(x, y, x2, y2, dim, draws=500)
    # The estimator's spread shrinks as 1 / sqrt(D): at D = 8192 it is a few
    # percent of the exact value, and one draw lies within 4 sigma of it.
    assert sigma < 0.05 * abs(exact), (sigma, exact)
    assert abs(estimate - exact) < 4 * sigma, (estimate, exact, sigma)


# --- Seeds, precision, saving. ---


def test_seed_fixes_the_hashes():
    xs = [np.ones((2, 3), "float32"), np.ones((2, 4), "float32")]
    a = CompactBilinearPooling(output_dim=32, seed=9)
    b = CompactBilinearPooling(output_dim=32, seed=9)
    c = CompactBilinearPooling(output_dim=32, seed=10)
    for layer in (a, b, c):
        layer(xs)
    ha, sa = _hashes_and_signs(a)
    hb, sb = _hashes_and_signs(b)
    hc, _ = _hashes_and_signs(c)
    for u, v in zip(ha + sa, hb + sb):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(ha, hc))
    assert not any(w.trainable for w in a.weights)


def test_mixed_precision_runs_the_fft_in_float32():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, d)).astype("float32") for d in (5, 6)]
    full = CompactBilinearPooling(output_dim=64, seed=4)
    half = CompactBilinearPooling(output_dim=64, seed=4, dtype="mixed_float16")
    out_full = ops.convert_to_numpy(full(xs))
    out_half = half(xs)
    assert keras.backend.standardize_dtype(out_half.dtype) == "float16"
    assert keras.backend.standardize_dtype(half.signs[0].dtype) == "float32"
    # Only the float16 rounding of the inputs and of the output remains.
    np.testing.assert_allclose(
        ops.convert_to_numpy(out_half).astype("float32"),
        out_full,
        atol=0.01 * np.abs(out_full).max(),
    )


def test_invalid_output_dim_message():
    assert_raises_with_message(
        lambda: CompactBilinearPooling(output_dim=2.0),
        r"^Received an invalid value for argument `output_dim`, expected a "
        r"positive integer. Received: output_dim=2.0$",
    )
