"""Probes of Dual Memory Fusion's learning and memory (an experiment, not a test).

    # Can a classifier learn through the layer? Synthetic task: two 64-d
    # Gaussian inputs, label = 2 * [x_a[0] > 0] + [x_t[1] > 0], 512 samples
    # (25% validation), Dense encoders, 15 epochs of Adam 1e-3.
    python scripts/dual_memory_probe.py synthetic concat
    python scripts/dual_memory_probe.py synthetic dual_memory [--no-noise] [--no-write]

    # Train on speech-text for a few epochs, then report the memories:
    # distinct rows (rounded to 3 decimals), mean pairwise cosine, read
    # sharpness and median temperature.
    python scripts/dual_memory_probe.py speech-text --epochs 10

`--no-noise` replaces the Gumbel noise by zeros, `--no-write` keeps the
memories fixed (the writer returns the old memory); both are diagnostics,
not options of the layer.
"""

import argparse
import time


def _synthetic(args):
    import keras
    import numpy as np

    from mmfusion_keras.layers import DualMemoryFusion

    keras.utils.set_random_seed(0)
    r = np.random.default_rng(0)
    n = 512
    x_a = r.standard_normal((n, 64)).astype("float32")
    x_t = r.standard_normal((n, 64)).astype("float32")
    y = (x_a[:, 0] > 0).astype(int) * 2 + (x_t[:, 1] > 0).astype(int)
    a, t = keras.Input((64,)), keras.Input((64,))
    e_a = keras.layers.Dense(64, activation="relu")(a)
    e_t = keras.layers.Dense(64, activation="relu")(t)
    if args.fusion == "concat":
        fused = keras.layers.Concatenate()([e_a, e_t])
    else:
        layer = DualMemoryFusion(memory_slots=32, output_dim=256, seed=0)
        if args.no_write:
            layer._write = lambda memory, x, j, training: memory
        if args.no_noise:
            layer._gumbel_noise = lambda shape: keras.ops.zeros(shape)
        fused = layer([e_a, e_t])
    hidden = keras.layers.Dense(64, activation="relu")(fused)
    model = keras.Model([a, t], keras.layers.Dense(4, activation="softmax")(hidden))
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    h = model.fit(
        [x_a, x_t], y, epochs=15, batch_size=64, verbose=0, validation_split=0.25
    )
    print(
        f"{args.fusion} no_noise={args.no_noise} no_write={args.no_write}: "
        f"train accuracy every 3 epochs {[round(v, 2) for v in h.history['accuracy'][::3]]}, "
        f"validation {[round(v, 2) for v in h.history['val_accuracy'][::3]]}"
    )


def _speech_text(args):
    import keras
    import numpy as np

    from mmfusion_keras.tasks import get_task

    task = get_task("speech-text")
    keras.utils.set_random_seed(0)
    x, y = task.load("train")
    x_val, y_val = task.load("validation")
    model = task.build_model("dual_memory", seed=0)
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.time()
    for epoch in range(args.epochs):
        h = model.fit(
            x, y, batch_size=64, epochs=1, verbose=0, validation_data=(x_val, y_val)
        )
        print(
            epoch,
            {k: round(v[-1], 3) for k, v in h.history.items()},
            f"{time.time() - start:.0f} s",
            flush=True,
        )
    fusion = model.get_layer("fusion")
    encoder = keras.Model(model.inputs, fusion.input)
    report = fusion.inspect(list(encoder.predict(x_val, verbose=0)))
    for j, name in enumerate(("audio", "text")):
        m = report["memory"][j]
        unit = m / np.linalg.norm(m, axis=1, keepdims=True)
        cosine = (unit @ unit.T)[np.triu_indices(len(m), 1)].mean()
        print(
            f"memory_{name}: {len(np.unique(np.round(m, 3), axis=0))} distinct of "
            f"{len(m)} rows, mean pairwise cosine {cosine:.3f}, mean max read "
            f"weight {report['read_weights'][j].max(1).mean():.3f}, median "
            f"temperature {np.median(report['temperature'][j]):.3f}"
        )
    print(f"Eq. 4 loss of the next write: {report['similarity_loss']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    synthetic = sub.add_parser("synthetic")
    synthetic.add_argument("fusion", choices=["concat", "dual_memory"])
    synthetic.add_argument("--no-noise", action="store_true")
    synthetic.add_argument("--no-write", action="store_true")
    speech = sub.add_parser("speech-text")
    speech.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    _synthetic(args) if args.probe == "synthetic" else _speech_text(args)


if __name__ == "__main__":
    main()
