"""Speed of fusion layers against plain concatenation, per backend.

For every fusion layer, builds the same small two-input classifier (two
Dense encoders -> fusion -> Dense head) and times the median train step
(`train_on_batch`) and predict step (`predict_on_batch`) after warm-up.
Each backend runs in its own process (the backend is fixed per process);
ratios are against concatenation measured in the same process.

    .venv/bin/python benchmarks/fusion_speed.py                 # all layers
    .venv/bin/python benchmarks/fusion_speed.py --fusions mbaf --backends jax
    .venv/bin/python benchmarks/fusion_speed.py --model physionet  # paper nets

`--model dual_memory` times the Dual Memory Fusion network (Fig. 1, small
encoders) against its naive-fusion twin.

`--model classifier` (default) uses the layers of
`mmfusion_keras.layers.registry` plus late fusion; `--model physionet` and
`--model iemocap` compare the MBAF paper's networks with MBAF vs with
naive fusion (tiny-but-real sizes, set below).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _time(fn, repeats, warmup=5, clock=time.perf_counter):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def _classifier_case(fusion, width, batch_size):
    import numpy as np

    from mmfusion_keras.models import build_fusion_classifier

    model = build_fusion_classifier(
        {"a": width, "b": width},
        10,
        fusion=fusion,
        encoder_units=(width,),
        head_units=(width,),
    )
    r = np.random.default_rng(0)
    x = {
        "a": r.standard_normal((batch_size, width)).astype("float32"),
        "b": r.standard_normal((batch_size, width)).astype("float32"),
    }
    return model, x, r.integers(0, 10, batch_size)


def _network_case(model_name, fusion, batch_size):
    import numpy as np

    from mmfusion_keras.models import mbaf_networks

    r = np.random.default_rng(0)
    if model_name == "dual_memory":
        return _dual_memory_case(fusion, batch_size, r)
    if model_name == "physionet":
        model = mbaf_networks.build_physionet_network(
            fusion=fusion, chunks=6, chunk_length=1000, lstm_units=128, dense_units=256
        )
        x = [
            r.standard_normal((batch_size, 6, 1000)).astype("float32") for _ in range(2)
        ]
        return model, x, r.integers(0, 3, batch_size)
    # A small IEMOCAP network (Fig. 2): SincNet audio encoder on 250 ms of
    # 16 kHz audio, GRU/CNN text encoder; widths reduced from 2048 / 4800.
    variant = "MBAF-I" if fusion == "mbaf" else "NF-I"
    model = mbaf_networks.build_iemocap_network(
        variant=variant,
        vocabulary_size=2000,
        audio_encoder_kwargs={
            "audio_length": 4000,
            "sinc_filters": 40,
            "sinc_kernel_size": 101,
            "dense_units": (256,),
        },
        text_encoder_kwargs={
            "sequence_length": 50,
            "embedding_dim": 50,
            "rnn_units": 64,
            "conv_filters": 64,
            "output_units": 256,
        },
    )
    x = {
        "audio": r.standard_normal((batch_size, 4000)).astype("float32"),
        "text": r.integers(1, 2000, (batch_size, 50)),
    }
    return model, x, r.integers(0, 4, batch_size)


def _dual_memory_case(fusion, batch_size, r):
    # The Dual Memory Fusion network (Fig. 1) with its default small
    # encoders (random-init Wav2Vec2-style audio on 1 s of 16 kHz audio, a
    # 2-layer 64-wide BERT, 30 tokens), the layer at the paper's sizes
    # (120 slots, 1024-wide pooling), vs its naive-fusion (concat) twin.
    import numpy as np

    from mmfusion_keras.models import build_dual_memory_network

    model = build_dual_memory_network(
        fusion="dual_memory" if fusion == "dual_memory" else "concat",
        audio_samples=16000,
        sequence_length=30,
    )
    x = {
        "audio": r.standard_normal((batch_size, 16000)).astype("float32"),
        "token_ids": r.integers(1, 1000, (batch_size, 30)).astype("int32"),
        "segment_ids": np.zeros((batch_size, 30), "int32"),
        "padding_mask": np.ones((batch_size, 30), "int32"),
    }
    return model, x, r.integers(0, 4, batch_size)


def worker(args):
    import keras

    results = []
    fusions = args.fusions.split(",")
    if "concat" not in fusions:
        fusions = ["concat"] + fusions
    for fusion in fusions:
        keras.utils.set_random_seed(0)
        if args.model == "classifier":
            model, x, y = _classifier_case(fusion, args.width, args.batch_size)
        else:
            model, x, y = _network_case(args.model, fusion, args.batch_size)
        # "auto" means XLA on TensorFlow and jit on JAX; on PyTorch it turns on
        # torch.compile, which recompiles for minutes here: run it eagerly.
        jit = False if keras.config.backend() == "torch" else "auto"
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit)
        # --clock cpu: process CPU time, less distorted by other load on a
        # shared machine (run single-threaded, see docs/performance.md).
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        train = _time(lambda: model.train_on_batch(x, y), args.repeats, clock=clock)  # noqa: B023
        predict = _time(lambda: model.predict_on_batch(x), args.repeats, clock=clock)  # noqa: B023
        results.append(
            {
                "fusion": fusion,
                "params": int(model.count_params()),
                "train_ms": 1000 * train,
                "predict_ms": 1000 * predict,
            }
        )
    print("RESULTS " + json.dumps({"backend": keras.config.backend(), "rows": results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default="classifier",
        choices=["classifier", "physionet", "iemocap", "dual_memory"],
    )
    parser.add_argument("--fusions", default=None, help="comma-separated; default: all")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time steps in wall seconds or in process CPU seconds",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fusions is None:
        if args.model == "classifier":
            sys.path.insert(0, REPO)
            from mmfusion_keras.layers.registry import fusion_names

            args.fusions = ",".join(
                ["concat"] + [f for f in fusion_names() if f != "concat"] + ["late"]
            )
        elif args.model == "dual_memory":
            args.fusions = "concat,dual_memory"
        else:
            args.fusions = "concat,mbaf"
    if args.worker:
        return worker(args)
    print(
        f"model={args.model} width={args.width} batch={args.batch_size} "
        f"repeats={args.repeats} clock={args.clock} (median step time after 5 warm-up steps; ratio = layer / concat, same process; jit: XLA on TensorFlow, jax.jit on JAX, eager on PyTorch)"
    )
    print(
        "| backend | fusion | params | train step ms | ratio | predict step ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        cmd = (
            [sys.executable, os.path.abspath(__file__), "--worker"]
            + [a for a in sys.argv[1:] if a != "--worker"]
            + ["--fusions", args.fusions]
        )
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [s for s in out.stdout.splitlines() if s.startswith("RESULTS ")]
        if out.returncode != 0 or not line:
            print(f"| {backend} | failed: {out.stderr.strip().splitlines()[-1:]} |||||")
            continue
        data = json.loads(line[0][len("RESULTS ") :])
        base = data["rows"][0]
        for row in data["rows"]:
            print(
                f"| {backend} | {row['fusion']} | {row['params']:,} | "
                f"{row['train_ms']:.2f} | {row['train_ms'] / base['train_ms']:.2f} | "
                f"{row['predict_ms']:.2f} | {row['predict_ms'] / base['predict_ms']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
