import keras
import numpy as np
from dcca_reference import canonical_correlations_np
from dcca_reference import generalized_cca_np
from dcca_reference import total_canonical_correlation_np
from keras import ops

from mmfusion_keras.losses import canonical_correlations
from mmfusion_keras.losses import generalized_canonical_correlation
from mmfusion_keras.losses import multiview_canonical_correlation
from mmfusion_keras.losses import total_canonical_correlation
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import trainable_gradients


def _known_correlation(n=2000, rhos=(0.9, 0.5), d1=4, d2=3, seed=0):
    """Views whose population canonical correlations are exactly `rhos`.

    Pair i shares a latent: x_i = z_i, y_i = rho_i z_i + sqrt(1-rho_i^2) e_i,
    the remaining columns are independent noise; then each view is mixed by
    a random well-conditioned matrix (CCA is invariant to it).
    """

    def mixing(d):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        return q * np.linspace(1.0, 3.0, d)

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1))
    y = rng.standard_normal((n, d2))
    for i, rho in enumerate(rhos):
        y[:, i] = rho * x[:, i] + np.sqrt(1 - rho**2) * y[:, i]
    return (x @ mixing(d1)).astype("float32"), (y @ mixing(d2)).astype("float32")


def test_matches_numpy_reference():
    x, y = _known_correlation(n=300)
    got = ops.convert_to_numpy(canonical_correlations(x, y, ridge=1e-3))
    np.testing.assert_allclose(got, canonical_correlations_np(x, y, 1e-3), atol=2e-4)
    for k in (None, 2):
        np.testing.assert_allclose(
            float(total_canonical_correlation(x, y, top_k=k, ridge=1e-3)),
            total_canonical_correlation_np(x, y, top_k=k, ridge=1e-3),
            atol=5e-4,
        )


def test_recovers_known_correlations_and_matches_sklearn_cca():
    from sklearn.cross_decomposition import CCA

    x, y = _known_correlation()
    got = ops.convert_to_numpy(canonical_correlations(x, y, ridge=1e-6))
    # Population values 0.9, 0.5, 0: sample estimates within sampling error.
    np.testing.assert_allclose(got[:2], [0.9, 0.5], atol=0.03)
    assert got[2] < 0.1
    cca = CCA(n_components=2, max_iter=2000, tol=1e-10).fit(x, y)
    xs, ys = cca.transform(x, y)
    sk = [np.corrcoef(xs[:, i], ys[:, i])[0, 1] for i in range(2)]
    np.testing.assert_allclose(got[:2], sk, atol=1e-3)
    np.testing.assert_allclose(
        float(total_canonical_correlation(x, y, top_k=2, ridge=1e-6)),
        sum(sk),
        atol=2e-3,
    )


def test_bounds():
    rng = np.random.default_rng(1)
    for n, d1, d2, k in [(6, 4, 5, None), (50, 6, 2, 5)]:
        x = rng.standard_normal((n, d1)).astype("float32")
        y = rng.standard_normal((n, d2)).astype("float32")
        value = float(total_canonical_correlation(x, y, top_k=k))
        assert 0.0 <= value <= min(k or d1, d1, d2) + 1e-5
    # Identical views: every correlation is (just below) 1.
    value = float(total_canonical_correlation(x, x, ridge=1e-3))
    assert 5.9 < value <= 6.0


def test_multiview_is_sum_over_pairs():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((64, 2))
    views = [(z + rng.standard_normal((64, 2))).astype("float32") for _ in range(3)]
    expected = sum(
        total_canonical_correlation_np(views[a], views[b], top_k=1)
        for a, b in [(0, 1), (0, 2), (1, 2)]
    )
    got = float(multiview_canonical_correlation(views, top_k=1))
    np.testing.assert_allclose(got, expected, atol=5e-4)


def test_generalized_cca_matches_sample_space_reference():
    """MAXVAR GCCA from the (sum d)-square whitened covariance equals the
    sample-space hat-matrix eigenproblem (independent NumPy route); for two
    views it is the two-view DCCA value."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((80, 2))
    views = [
        (z @ rng.standard_normal((2, d)) + rng.standard_normal((80, d))).astype(
            "float32"
        )
        for d in (3, 4, 2)
    ]
    for k in (1, 2):
        expected, _, _ = generalized_cca_np(views, top_k=k, ridge=1e-3)
        got = float(generalized_canonical_correlation(views, top_k=k, ridge=1e-3))
        np.testing.assert_allclose(got, expected, atol=2e-4)
    two = float(generalized_canonical_correlation(views[:2], top_k=2, ridge=1e-6))
    np.testing.assert_allclose(
        two, total_canonical_correlation_np(views[0], views[1], 2, 1e-6), atol=2e-4
    )
    # One shared subspace: three copies of a view give the maximum, k (m - 1).
    same = [views[0]] * 3
    np.testing.assert_allclose(
        float(generalized_canonical_correlation(same, top_k=2, ridge=1e-6)),
        4.0,
        atol=1e-3,
    )


class _Encoders(keras.layers.Layer):
    """Two Dense encoders whose outputs' correlation is the model output."""

    def __init__(self, top_k=None, **kwargs):
        super().__init__(**kwargs)
        self.top_k = top_k
        self.fx = keras.layers.Dense(3, activation="tanh")
        self.fy = keras.layers.Dense(3, activation="tanh")

    def build(self, shapes):
        self.fx.build(shapes[0])
        self.fy.build(shapes[1])

    def call(self, inputs):
        corr = total_canonical_correlation(
            self.fx(inputs[0]), self.fy(inputs[1]), top_k=self.top_k
        )
        return ops.reshape(corr, (1, 1))


def test_gradients_are_finite_and_nonzero():
    n = 3  # batch smaller than the widths: rank-deficient T
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 5)).astype("float32")
    y = rng.standard_normal((n, 4)).astype("float32")
    inputs = [keras.Input((5,)), keras.Input((4,))]
    model = keras.Model(inputs, _Encoders(top_k=2)(inputs))
    grads = trainable_gradients(
        model, [x, y], output_weights=np.ones((1, 1), "float32")
    )
    for var, grad in zip(model.trainable_variables, grads):
        assert np.all(np.isfinite(grad)), var.path
        if "kernel" in var.path:
            assert np.any(grad != 0), var.path


def test_errors():
    x = np.ones((4, 3), "float32")
    assert_raises_with_message(
        lambda: total_canonical_correlation(x, np.ones((5, 2), "float32")),
        r"same number of samples.*\(4, 3\).*\(5, 2\)",
    )
    assert_raises_with_message(
        lambda: total_canonical_correlation(x, np.ones((4, 2, 1), "float32")),
        r"\(batch, features\).*y with shape \(4, 2, 1\)",
    )
    assert_raises_with_message(
        lambda: total_canonical_correlation(x, x, top_k=0),
        r"argument `top_k`, expected a positive integer or None. Received: top_k=0",
    )
    assert_raises_with_message(
        lambda: total_canonical_correlation(x, x, ridge=-1.0),
        r"argument `ridge`, expected a non-negative number. Received: ridge=-1.0",
    )
    assert_raises_with_message(
        lambda: multiview_canonical_correlation([x]),
        r"at least 2 views.*Received 1 views",
    )
