"""`reproduce_timing.record_fits`: per-step times and FLOPs of `fit` calls."""

import keras
import numpy as np

from mmfusion_keras.experiments.reproduce_timing import record_fits


def test_record_fits_times_steps_and_counts_flops():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)],
        name="tiny",
    )
    model.compile("sgd", "mse")
    x, y = np.ones((18, 6), "float32"), np.zeros((18, 2), "float32")
    records = []
    with record_fits(records):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # no longer recorded
    assert len(records) == 1
    (r,) = records
    assert r["model"] == "tiny" and r["batch"] == 4 and r["parameters"] == 74
    # 5 batches: the first (compile) reported apart, the last (2 examples) not timed.
    assert r["steps_timed"] == 3
    assert r["first_step_seconds"] > 0 and r["step_cpu_seconds_median"] >= 0
    if keras.config.backend() == "tensorflow":
        assert r["forward_flops"] is None
    else:
        # 2 * (6 * 8 + 8 * 2) multiply-adds per example; XLA also counts the
        # bias additions.
        assert 2 * 4 * (48 + 16) <= r["forward_flops"] <= 2 * 4 * (48 + 16) + 4 * 10
