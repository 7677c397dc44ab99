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

    # The writer on a clustered two-view task (8 classes, two 32-d views,
    # 1024 samples, Dense encoders, 30 slots, batch 32, Adam 1e-3): what one
    # write does to the rows of [M; x] stage by stage at initialization
    # (mean row norm, mean pairwise cosine, attention entropy), then memory
    # health per epoch (distinct slots, read entropy, mean norm, mean cosine).
    python scripts/dual_memory_probe.py writer --selection soft --block post_norm
    python scripts/dual_memory_probe.py writer --selection straight_through --block rezero

    # Training (Gumbel) reads against inference reads of a saved model, on
    # 64 validation samples of its task: similarity spread, temperature,
    # agreement of the argmax, cosine between the two reads.
    python scripts/dual_memory_probe.py reads saved_models/speech_text_dual_memory

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


def _mean_cosine(x):
    import numpy as np

    x = np.asarray(x, "float64")
    u = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    s = u @ u.T
    return (s.sum() - np.trace(s)) / (len(x) * (len(x) - 1))


def _writer_stages(layer, j, memory, x):
    """Norm and mean cosine of the rows after each stage of one write."""
    import numpy as np
    from keras import ops

    attention, norm_1, hidden, out, norm_2, top_k = layer.writers[j]
    scales = (1.0, 1.0)
    if layer.writer_block == "rezero":
        scales = tuple(ops.convert_to_numpy(layer.writer_scales[j]))
    h0 = ops.expand_dims(ops.concatenate([ops.convert_to_tensor(memory), x], 0), 0)
    a, scores = attention(h0, h0, return_attention_scores=True)
    h1 = norm_1(h0 + scales[0] * a)
    f = out(hidden(h1))
    h2 = norm_2(h1 + scales[1] * f)
    stages = {"input": h0, "attention": a, "norm_1": h1, "ffn": f, "norm_2": h2}
    stages["top_k"] = top_k(h2)
    report = {
        name: (
            round(float(np.linalg.norm(ops.convert_to_numpy(v)[0], axis=1).mean()), 2),
            round(float(_mean_cosine(ops.convert_to_numpy(v)[0])), 3),
        )
        for name, v in stages.items()
    }
    z = ops.convert_to_numpy(scores)[0]
    entropy = np.mean(-np.sum(z * np.log(z + 1e-12), -1)) / np.log(z.shape[-1])
    report["attention entropy / uniform"] = round(float(entropy), 3)
    return report


def _writer(args):
    import keras
    import numpy as np

    from mmfusion_keras.inspection import memory_health
    from mmfusion_keras.layers import DualMemoryFusion

    keras.utils.set_random_seed(0)
    r = np.random.default_rng(0)
    centers_a = r.standard_normal((8, 32)) * 2
    centers_t = r.standard_normal((8, 32)) * 2
    y = r.integers(0, 8, 1024)
    a = (centers_a[y] + r.standard_normal((1024, 32))).astype("float32")
    t = (centers_t[y] + r.standard_normal((1024, 32))).astype("float32")
    inputs = [keras.Input((32,)), keras.Input((32,))]
    encoded = [keras.layers.Dense(32, activation="relu")(i) for i in inputs]
    layer = DualMemoryFusion(
        memory_slots=args.slots,
        output_dim=args.output_dim,
        writer_heads=4,
        seed=0,
        writer_selection=args.selection,
        writer_block=args.block,
    )
    hidden = keras.layers.Dense(64, activation="relu")(layer(encoded))
    model = keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(hidden))
    encoder = keras.Model(inputs, encoded)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = encoder.predict([a[:32], t[:32]], verbose=0)
    memory = keras.ops.convert_to_numpy(layer.memories[0])
    print("one write at initialization, (mean norm, mean cosine) of the rows:")
    print(_writer_stages(layer, 0, memory, x[0]))
    for epoch in range(args.epochs):
        h = model.fit([a[:768], t[:768]], y[:768], batch_size=32, verbose=0)
        report = layer.inspect(encoder.predict([a[768:], t[768:]], verbose=0))
        health = [
            memory_health(m, z)
            for m, z in zip(report["memory"], report["read_weights"])
        ]
        print(
            f"epoch {epoch + 1}: train accuracy {h.history['accuracy'][-1]:.3f}; "
            + "; ".join(
                f"{name}: {v['distinct_slots']}/{v['slots']} distinct, read entropy "
                f"{v['read_entropy']:.2f}, mean norm {v['norm_mean']:.2f}, mean "
                f"cosine {_mean_cosine(m):.3f}"
                for name, v, m in zip(("M_a", "M_t"), health, report["memory"])
            ),
            flush=True,
        )
    accuracy = model.evaluate([a[768:], t[768:]], y[768:], verbose=0)[1]
    print(f"test accuracy {accuracy:.3f}")


def _reads(args):
    import json
    import os

    import keras
    import numpy as np
    from keras import ops

    import mmfusion_keras.layers  # noqa: F401
    from mmfusion_keras.tasks import get_task

    with open(os.path.join(args.model, "model_card.json")) as f:
        card = json.load(f)
    model = keras.saving.load_model(
        os.path.join(args.model, "model.keras"), compile=False
    )
    layer = model.get_layer("fusion")
    x, _ = get_task(card["task"]).load("validation", seed=card["seed"])
    encoder = keras.Model(model.inputs, layer.input)
    e = [ops.convert_to_tensor(v[:64]) for v in encoder.predict(x, verbose=0)]
    norms = [float(np.linalg.norm(ops.convert_to_numpy(v), axis=1).mean()) for v in e]
    print(f"mean embedding norms (x_a, x_t): {norms[0]:.2f}, {norms[1]:.2f}")
    clean = layer._forward(e, training=False)
    noisy = layer._forward(e, training=True)
    for j, name in enumerate(("M_a (text query)", "M_t (audio query)")):
        s = ops.convert_to_numpy(ops.matmul(e[1 - j], ops.transpose(layer.memories[j])))
        tau = ops.convert_to_numpy(clean["temperature"][j])
        zc = ops.convert_to_numpy(clean["read_weights"][j])
        zn = ops.convert_to_numpy(noisy["read_weights"][j])
        rc = ops.convert_to_numpy(clean["reads"][j])
        rn = ops.convert_to_numpy(noisy["reads"][j])
        cos = np.sum(rc * rn, 1) / (
            np.linalg.norm(rc, axis=1) * np.linalg.norm(rn, axis=1) + 1e-12
        )
        print(
            f"{name}: similarity std over slots {s.std(1).mean():.3f}, median "
            f"temperature {np.median(tau):.3f}, argmax agreement "
            f"{np.mean(zc.argmax(1) == zn.argmax(1)):.2f}, cosine(training read, "
            f"inference read) {cos.mean():.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    synthetic = sub.add_parser("synthetic")
    synthetic.add_argument("fusion", choices=["concat", "dual_memory"])
    synthetic.add_argument("--no-noise", action="store_true")
    synthetic.add_argument("--no-write", action="store_true")
    speech = sub.add_parser("speech-text")
    speech.add_argument("--epochs", type=int, default=10)
    writer = sub.add_parser("writer")
    writer.add_argument(
        "--selection",
        default="straight_through",
        choices=["soft", "hard", "straight_through"],
    )
    writer.add_argument("--block", default="rezero", choices=["post_norm", "rezero"])
    writer.add_argument("--slots", type=int, default=30)
    writer.add_argument("--output-dim", type=int, default=128)
    writer.add_argument("--epochs", type=int, default=4)
    reads = sub.add_parser("reads")
    reads.add_argument("model", help="folder with model.keras and model_card.json")
    args = parser.parse_args()
    probes = {
        "synthetic": _synthetic,
        "speech-text": _speech_text,
        "writer": _writer,
        "reads": _reads,
    }
    probes[args.probe](args)


if __name__ == "__main__":
    main()
