"""Per-step cost of the recipes' models at full size (run-time estimates).

Runs a recipe with its full-size parameters (widths, sequence lengths,
batch sizes) on whatever corpus is given (the tiny test corpora are
enough: only the per-step cost is measured, not accuracy), with
`keras.Model.fit` wrapped so that every `fit` call records:

- the wall time and the CPU time (the last, possibly smaller, batch of
  each epoch excluded) (all threads of the process) of each
  training step, the first step of each `fit` (which compiles) apart; on a
  shared machine the CPU time is the better guide to an idle machine;
- the examples per step (the first batch's size);
- the forward FLOPs of one training-mode batch: on JAX from XLA's cost
  analysis, with every recurrent layer unrolled first (XLA counts a while
  loop's body once, so a rolled RNN would be undercounted by its length);
  on PyTorch from `torch.utils.flop_counter.FlopCounterMode` (matmuls and
  convolutions only).
  A training step costs about 3x the forward pass (forward + backward).

    python -m mmfusion_keras.experiments.reproduce_timing mbaf-physionet \\
        --data-root DIR --set epochs=1 --set 'variants=["F-IV NF"]' --output t.json

The numbers are measured on this machine; the run-time estimates in
docs/reproduce.md multiply them by the steps of the full protocol.
"""

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time


def _first_batch(x, y, batch_size):
    import numpy as np

    if (
        hasattr(x, "__getitem__")
        and hasattr(x, "__len__")
        and hasattr(x, "on_epoch_end")
    ):
        batch = x[0]
        return batch[0], len(np.asarray(batch[1]))
    n = batch_size or 32
    if isinstance(x, dict):
        xb = {k: np.asarray(v)[:n] for k, v in x.items()}
        size = len(next(iter(xb.values())))
    elif isinstance(x, (list, tuple)):
        xb = [np.asarray(v)[:n] for v in x]
        size = len(xb[0])
    else:
        xb = np.asarray(x)[:n]
        size = len(xb)
    return xb, size


def forward_flops(model, x):
    """XLA's FLOP count of one training-mode forward pass on `x` (JAX only),
    recurrent layers unrolled; `None` on other backends or on failure."""
    import keras

    if keras.config.backend() == "torch":
        return _torch_flops(model, x)
    if keras.config.backend() != "jax":
        return None
    import jax

    unrolled = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "unroll") and not layer.unroll:
            layer.unroll = True
            unrolled.append(layer)
    try:
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]

        def f(tv, ntv, x):
            return model.stateless_call(tv, ntv, x, training=True)[0]

        cost = jax.jit(f).lower(tv, ntv, x).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops")) if cost and "flops" in cost else None
    except Exception:  # noqa: BLE001 (an estimate; never fail the timing)
        return None
    finally:
        for layer in unrolled:
            layer.unroll = False


def _torch_flops(model, x):
    """PyTorch's `FlopCounterMode` over one eager training-mode forward pass
    (counts matmuls and convolutions, 2 per multiply-add; loops included)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model(x, training=True)
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 (an estimate; never fail the timing)
        return None


@contextlib.contextmanager
def record_fits(records, flops=True):
    """Wraps `keras.Model.fit`; appends one dict per call to `records`."""
    import keras

    original = keras.Model.fit

    class _Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.cpu = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self._t, self._c = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            # The last batch of an epoch may be smaller (a new shape, hence a
            # new compile): not timed.
            steps = (self.params or {}).get("steps")
            if steps is not None and batch == steps - 1 and steps > 1:
                return
            self.times.append(time.perf_counter() - self._t)
            self.cpu.append(time.process_time() - self._c)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kw):
        timer = _Timer()
        result = original(
            self,
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            callbacks=list(callbacks or []) + [timer],
            **kw,
        )
        try:
            xb, size = _first_batch(x, y, batch_size)
        except Exception:  # noqa: BLE001
            xb, size = None, None
        rest = timer.times[1:]
        records.append(
            {
                "model": self.name,
                "parameters": int(self.count_params()),
                "batch": size,
                "steps_timed": len(rest),
                "first_step_seconds": timer.times[0] if timer.times else None,
                "step_seconds_median": statistics.median(rest) if rest else None,
                "step_cpu_seconds_median": (
                    statistics.median(timer.cpu[1:]) if rest else None
                ),
                "forward_flops": forward_flops(self, xb)
                if flops and xb is not None
                else None,
            }
        )
        return result

    keras.Model.fit = fit
    try:
        yield records
    finally:
        keras.Model.fit = original


def time_recipe(name, data_root, overrides=(), log=print):
    """Runs recipe `name` (full-size parameters + `overrides`) and returns the
    records of every `fit` call."""
    from mmfusion_keras.experiments.reproduce import run_recipe

    records = []
    with tempfile.TemporaryDirectory() as out, record_fits(records):
        run_recipe(
            name, data_root, out, overrides=list(overrides), overwrite=True, log=log
        )
    return records


def main(argv=None):
    import keras

    parser = argparse.ArgumentParser(
        prog="python -m mmfusion_keras.experiments.reproduce_timing",
        description="Per-step time (and FLOPs on JAX) of a recipe's models.",
    )
    parser.add_argument("name")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    records = time_recipe(args.name, args.data_root, args.overrides)
    result = {
        "recipe": args.name,
        "backend": keras.config.backend(),
        "overrides": args.overrides,
        "fits": records,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
