import pathlib
import sys

import numpy as np
from keras import ops

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "losses"))
from dcca_reference import generalized_cca_np  # noqa: E402

from mmfusion_keras.layers import CanonicalProjection
from mmfusion_keras.testing import run_layer_conformance


def _views(n=64, seed=0):
    """Three views sharing 2 latent variables, plus view-specific noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    views = []
    for d in (4, 3, 5):
        mix = rng.standard_normal((2, d))
        views.append(z @ mix + 0.3 * rng.standard_normal((n, d)))
    return [v.astype("float32") for v in views]


def test_conformance():
    run_layer_conformance(
        CanonicalProjection,
        {"units": 2},
        [(None, 5, 3), (None, 4, 4)],
        expected_output_shape=[(None, 5, 2), (None, 4, 2)],
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=2,
        run_gradients=False,
        error_cases=[
            (
                "units too large",
                lambda: CanonicalProjection(4)(
                    [np.zeros((2, 3), "float32"), np.zeros((2, 5), "float32")]
                ),
                r"CanonicalProjection\(units=4\) needs every view to have at "
                r"least `units` features. Received view widths \[3, 5\]",
            ),
            (
                "one view",
                lambda: CanonicalProjection(1)([np.zeros((2, 3), "float32")]),
                r"expects a list of at least 2 views",
            ),
        ],
    )


def test_projection_matches_numpy_gcca():
    """After one training call with momentum 0 the statistics are the batch's
    and the maps equal MAXVAR GCCA's least-squares maps onto G (reference:
    sample-space hat matrices, tests/losses/dcca_reference.py)."""
    views = _views()
    layer = CanonicalProjection(2, ridge=1e-3, momentum=0.0)
    out = layer(views, training=True)
    _, g, maps = generalized_cca_np(views, top_k=2, ridge=1e-3)
    got_maps, _ = layer.projections()
    for got, ref, view, o in zip(got_maps, maps, views, out):
        got = ops.convert_to_numpy(got).astype("float64")
        sign = np.sign(np.sum(got * ref, axis=0))  # G's sign is arbitrary
        np.testing.assert_allclose(got * sign, ref, atol=2e-3, rtol=2e-3)
        # The projected view is the centred view through its map.
        expected = (view - view.mean(0)) @ got
        np.testing.assert_allclose(ops.convert_to_numpy(o), expected, atol=1e-4)
    # The three projections agree with each other (shared variates).
    a, b = (ops.convert_to_numpy(o)[:, 0] for o in out[:2])
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_statistics_move_only_in_training_and_masks_apply():
    views = [v[:, None, :].repeat(3, axis=1) for v in _views(16)[:2]]
    mask = [np.array([[True, True, False]] * 16), None]
    layer = CanonicalProjection(1, momentum=0.5)
    layer(views, mask=mask)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.moving_mean), 0.0)
    out = layer(views, mask=mask, training=True)
    assert not np.allclose(ops.convert_to_numpy(layer.moving_mean), 0.0)
    assert np.all(ops.convert_to_numpy(out[0])[:, 2] == 0.0)
    layer.trainable = False
    before = ops.convert_to_numpy(layer.moving_covariance)
    layer(views, mask=mask, training=True)
    np.testing.assert_array_equal(ops.convert_to_numpy(layer.moving_covariance), before)
