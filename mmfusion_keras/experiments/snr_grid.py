"""Fusion depth vs. noise: the SNR-grid study of Barnum et al. (2020).

Trains each model variant of `build_early_fusion_model` once on AV-Digits
with white noise at one training (audio SNR, image SNR), evaluates it on
the test split over a grid of test (audio SNR, image SNR), and writes:

- `snr_grid.csv`: one row per (variant, test audio SNR, test image SNR);
- `snr_grid.png`: accuracy heatmaps per variant (Fig. 1, first row) and the
  accuracy of each later-fusion variant minus that of initial fusion
  (Fig. 1, second row); the training SNRs are boxed in red;
- `snr_grid.json`: the settings, seeds, versions and wall times.

SNRs are given as the paper gives them, as linear power ratios (`0.5`
means a noise power twice the signal power, i.e. -3.01 dB), or `orig` for
no noise. Audio features are `load_av_digits(features="stft")`: Barnum et
al.'s spectrogram (400-sample windows, 201 bins, stride 200) of the
front-padded 1 s clips, 79 frames.

Run: `mmfusion snr-grid --output runs/snr_grid` (small defaults: a 4 x 4
grid, 16 units, a few epochs) or `python -m mmfusion_keras.experiments.snr_grid`.
`--paper-sizes` uses the paper's layer sizes (64 units, Dense 128) and
`--full-grid` a 10 x 10 grid.

Reference:
    Barnum, Talukder, Yue, "On the Benefits of Early Fusion in Multimodal
    Representation Learning", NeurIPS 2020 SVRHM workshop, sections 5.1-5.3,
    Figures 1-2, Appendix A.2-A.4.
"""

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

SMALL_AUDIO_SNRS = ("orig", "2", "0.5", "0.125")
SMALL_IMAGE_SNRS = ("orig", "1", "0.25", "0.0625")
FULL_SNRS = ("orig", "8", "4", "2", "1", "0.5", "0.25", "0.125", "0.0625", "0.03125")
SMALL_SIZES = {"units": 16, "dense_units": 32}
PAPER_SIZES = {"units": 64, "dense_units": 128}
CSV_FIELDS = (
    "variant",
    "train_audio_snr",
    "train_image_snr",
    "test_audio_snr",
    "test_image_snr",
    "accuracy",
    "num_test",
)


def parse_snr(text):
    """`"orig"` -> `None` (no noise); a positive ratio -> itself (float)."""
    text = str(text).strip()
    if text.lower() in ("orig", "none", "inf", "clean"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"snr-grid: an SNR must be a positive power ratio (e.g. 0.5) or "
            f"'orig' (no noise). Received: {text!r}"
        )
    return value


def snr_label(snr):
    return "orig" if snr is None else f"{snr:g}"


def snr_db(snr, convention="power"):
    """Linear ratio -> dB for `load_av_digits` (None stays None).

    `convention="power"` reads the paper's ratios as power ratios (0.5 ->
    -3.01 dB), `"amplitude"` as amplitude ratios (0.5 -> -6.02 dB); see
    `mmfusion_keras.datasets.av_digits.snr_ratio_to_db`.
    """
    from mmfusion_keras.datasets.av_digits import snr_ratio_to_db

    return None if snr is None else snr_ratio_to_db(snr, convention)


def parse_variant(name):
    """`"initial"`, `"second_no_audio"`, ... -> `(fusion, zero_input)`."""
    from mmfusion_keras.models.early_fusion import EARLY_FUSION_VARIANTS

    fusion, _, zero = name.partition("_no_")
    zero_input = zero or None
    if fusion not in EARLY_FUSION_VARIANTS or zero_input not in (
        None,
        "image",
        "audio",
    ):
        raise ValueError(
            f"snr-grid: unknown variant {name!r}. Expected one of "
            f"{EARLY_FUSION_VARIANTS}, optionally with '_no_image' or "
            "'_no_audio' (the unimodal models), e.g. 'initial_no_audio'."
        )
    return fusion, zero_input


def add_arguments(parser):
    """The runner's options (shared by `main` and `mmfusion snr-grid`)."""
    parser.add_argument(
        "--output", default="snr_grid", help="directory for the CSV, PNG and JSON"
    )
    parser.add_argument(
        "--variants",
        default="initial,second,fc",
        help="comma-separated: initial, second, fc, optionally with _no_image / "
        "_no_audio (unimodal). Differences are taken from 'initial'.",
    )
    parser.add_argument(
        "--train-snr",
        default="0.5,0.25",
        help="training 'audio,image' SNR as power ratios or 'orig' (the "
        "paper's Fig. 1: 0.5,0.25)",
    )
    parser.add_argument(
        "--audio-snrs",
        default=None,
        help=f"test audio SNRs (default {','.join(SMALL_AUDIO_SNRS)})",
    )
    parser.add_argument(
        "--image-snrs",
        default=None,
        help=f"test image SNRs (default {','.join(SMALL_IMAGE_SNRS)})",
    )
    parser.add_argument(
        "--full-grid",
        action="store_true",
        help=f"test over {len(FULL_SNRS)} x {len(FULL_SNRS)} SNRs: "
        f"{','.join(FULL_SNRS)}",
    )
    parser.add_argument(
        "--paper-sizes",
        action="store_true",
        help="the paper's sizes (64 units, Dense 128) instead of the small "
        f"defaults {SMALL_SIZES}",
    )
    parser.add_argument(
        "--snr-convention",
        choices=("power", "amplitude"),
        default="power",
        help="how the linear SNRs are read: power ratios (0.5 = -3.01 dB, "
        "default) or amplitude ratios (0.5 = -6.02 dB); the paper does not say",
    )
    parser.add_argument(
        "--noise-order",
        choices=("before_padding", "after_padding"),
        default="before_padding",
        help="audio noise on the clip before front padding (the paper's "
        "order, default) or over the whole padded window",
    )
    parser.add_argument("--units", type=int, default=None, help="overrides the size")
    parser.add_argument("--dense-units", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="weights, order, noise")
    parser.add_argument(
        "--max-train", type=int, default=None, help="first N training examples"
    )
    parser.add_argument(
        "--max-test", type=int, default=None, help="first N test examples"
    )
    parser.add_argument(
        "--last-frames",
        type=int,
        default=None,
        help="keep only the last N spectrogram frames (the audio is "
        "front-padded, so the speech is at the end); quick runs and tests",
    )
    parser.add_argument("--verbose", type=int, default=1)
    return parser


def _check_int(name, value, minimum=1):
    if value is not None and value < minimum:
        raise ValueError(
            f"snr-grid: `--{name}` must be an integer >= {minimum}. Received: {value}"
        )


def _log(args, message):
    if args.verbose:
        print(message, flush=True)


def _load(split, audio_snr, image_snr, seed, max_examples, noise):
    from mmfusion_keras.datasets.av_digits import load_av_digits

    return load_av_digits(
        split,
        audio_snr_db=snr_db(audio_snr, noise["convention"]),
        image_snr_db=snr_db(image_snr, noise["convention"]),
        features="stft",
        seed=seed,
        max_examples=max_examples,
        noise_order=noise["order"],
    )


def _test_inputs(audio_snrs, image_snrs, seed, max_examples, noise):
    """Test inputs per SNR, loaded once per audio SNR and per image SNR.

    Image and audio noise come from independent generators, so the image
    of a noisy-audio load equals the image of any other load with the
    same image SNR.
    """
    audio = {}
    labels = None
    for a in audio_snrs:
        ds = _load("test", a, None, seed, max_examples, noise)
        audio[a] = ds.inputs["audio"]
        labels = ds.labels
    images = {}
    from mmfusion_keras.datasets.av_digits import load_av_digits

    for v in image_snrs:
        ds = load_av_digits(
            "test",
            image_snr_db=snr_db(v, noise["convention"]),
            features="waveform",
            seed=seed,
            max_examples=max_examples,
        )
        images[v] = ds.inputs["image"]
    return audio, images, labels


def run(args):
    """Runs the study for parsed `args`; returns the list of CSV rows."""
    import keras

    from mmfusion_keras.models.early_fusion import build_early_fusion_model

    start = time.time()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants:
        raise ValueError("snr-grid: `--variants` is empty.")
    parsed = {v: parse_variant(v) for v in variants}
    train = [parse_snr(s) for s in args.train_snr.split(",")]
    if len(train) != 2:
        raise ValueError(
            "snr-grid: `--train-snr` takes two values 'audio,image'. "
            f"Received: {args.train_snr!r}"
        )
    if args.full_grid:
        audio_snrs = [parse_snr(s) for s in FULL_SNRS]
        image_snrs = list(audio_snrs)
    else:
        audio_snrs = [
            parse_snr(s)
            for s in (args.audio_snrs or ",".join(SMALL_AUDIO_SNRS)).split(",")
        ]
        image_snrs = [
            parse_snr(s)
            for s in (args.image_snrs or ",".join(SMALL_IMAGE_SNRS)).split(",")
        ]
    sizes = dict(PAPER_SIZES if args.paper_sizes else SMALL_SIZES)
    if args.units is not None:
        sizes["units"] = args.units
    if args.dense_units is not None:
        sizes["dense_units"] = args.dense_units
    for name in ("epochs", "batch_size"):
        _check_int(name.replace("_", "-"), getattr(args, name))
    for name in ("max_train", "max_test", "last_frames", "units", "dense_units"):
        _check_int(name.replace("_", "-"), sizes.get(name, getattr(args, name, None)))
    os.makedirs(args.output, exist_ok=True)

    _log(args, f"snr-grid: loading data (backend {keras.config.backend()})")
    noise = {"convention": args.snr_convention, "order": args.noise_order}
    train_ds = _load("train", train[0], train[1], args.seed, args.max_train, noise)
    x_train, y_train = train_ds.inputs, train_ds.labels
    test_audio, test_images, y_test = _test_inputs(
        audio_snrs, image_snrs, args.seed, args.max_test, noise
    )
    if args.last_frames is not None:
        x_train = {**x_train, "audio": x_train["audio"][:, -args.last_frames :]}
        test_audio = {a: x[:, -args.last_frames :] for a, x in test_audio.items()}
    audio_shape = tuple(x_train["audio"].shape[1:])
    image_shape = tuple(x_train["image"].shape[1:])
    data_time = time.time() - start

    rows, timings = [], {}
    for variant in variants:
        fusion, zero_input = parsed[variant]
        keras.utils.set_random_seed(args.seed)
        model = build_early_fusion_model(
            fusion,
            image_shape=image_shape,
            audio_shape=audio_shape,
            zero_input=zero_input,
            name=variant,
            **sizes,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        t0 = time.time()
        history = model.fit(
            x_train,
            y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=2 if args.verbose > 1 else 0,
        )
        t1 = time.time()
        for a in audio_snrs:
            for v in image_snrs:
                probs = model.predict(
                    {"image": test_images[v], "audio": test_audio[a]},
                    batch_size=256,
                    verbose=0,
                )
                accuracy = float(np.mean(np.argmax(probs, axis=-1) == y_test))
                rows.append(
                    {
                        "variant": variant,
                        "train_audio_snr": snr_label(train[0]),
                        "train_image_snr": snr_label(train[1]),
                        "test_audio_snr": snr_label(a),
                        "test_image_snr": snr_label(v),
                        "accuracy": round(accuracy, 6),
                        "num_test": int(len(y_test)),
                    }
                )
        t2 = time.time()
        timings[variant] = {
            "train_seconds": round(t1 - t0, 1),
            "eval_seconds": round(t2 - t1, 1),
            "final_train_accuracy": float(history.history["accuracy"][-1]),
            "params": int(model.count_params()),
        }
        at_train = [
            r["accuracy"]
            for r in rows
            if r["variant"] == variant
            and r["test_audio_snr"] == snr_label(train[0])
            and r["test_image_snr"] == snr_label(train[1])
        ]
        _log(
            args,
            f"snr-grid: {variant}: trained {t1 - t0:.0f} s, evaluated {t2 - t1:.0f} s"
            + (
                f", test accuracy at the training SNRs {at_train[0]:.3f}"
                if at_train
                else ""
            ),
        )

    csv_path = os.path.join(args.output, "snr_grid.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    png_path = os.path.join(args.output, "snr_grid.png")
    plot_grid(rows, variants, audio_snrs, image_snrs, train, png_path)
    summary = {
        "command": getattr(args, "command_line", None),
        "backend": keras.config.backend(),
        "keras": keras.__version__,
        "seed": args.seed,
        "variants": variants,
        "train_snr": [snr_label(s) for s in train],
        "snr_convention": args.snr_convention,
        "noise_order": args.noise_order,
        "audio_snrs": [snr_label(s) for s in audio_snrs],
        "image_snrs": [snr_label(s) for s in image_snrs],
        "sizes": sizes,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_train": int(len(y_train)),
        "num_test": int(len(y_test)),
        "audio_shape": list(audio_shape),
        "data_seconds": round(data_time, 1),
        "variants_timing": timings,
        "wall_seconds": round(time.time() - start, 1),
    }
    with open(os.path.join(args.output, "snr_grid.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    _log(
        args,
        f"snr-grid: wrote {csv_path} and {png_path} ({summary['wall_seconds']:.0f} s)",
    )
    return rows


def accuracy_table(rows, variant, audio_snrs, image_snrs):
    """`(len(audio_snrs), len(image_snrs))` accuracies of one variant."""
    index = {
        (r["test_audio_snr"], r["test_image_snr"]): r["accuracy"]
        for r in rows
        if r["variant"] == variant
    }
    return np.array(
        [[index[(snr_label(a), snr_label(v))] for v in image_snrs] for a in audio_snrs]
    )


def plot_grid(rows, variants, audio_snrs, image_snrs, train, path):
    """Fig. 1-style heatmaps: accuracy, and later fusion minus initial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    tables = {v: accuracy_table(rows, v, audio_snrs, image_snrs) for v in variants}
    others = [v for v in variants if v != "initial"] if "initial" in variants else []
    n_cols = len(variants)
    n_rows = 2 if others else 1
    cell = 0.45 if len(image_snrs) > 6 else 0.7
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(
            1.2 + n_cols * (1.0 + cell * len(image_snrs)),
            0.8 + n_rows * (0.9 + cell * len(audio_snrs)),
        ),
        squeeze=False,
    )
    x_labels = [snr_label(s) for s in image_snrs]
    y_labels = [snr_label(s) for s in audio_snrs]
    font = 6 if len(image_snrs) > 6 else 8

    def draw(ax, table, title, cmap, vmin, vmax, fmt):
        im = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(x_labels)), x_labels, fontsize=font, rotation=90)
        ax.set_yticks(range(len(y_labels)), y_labels, fontsize=font)
        ax.set_xlabel("test image SNR", fontsize=font + 1)
        ax.set_ylabel("test audio SNR", fontsize=font + 1)
        ax.set_title(title, fontsize=font + 2)
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                ax.text(
                    j,
                    i,
                    fmt.format(table[i, j]),
                    ha="center",
                    va="center",
                    fontsize=font,
                )
        if train[0] in audio_snrs and train[1] in image_snrs:
            i, j = audio_snrs.index(train[0]), image_snrs.index(train[1])
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2)
            )
        return im

    for k, v in enumerate(variants):
        draw(axes[0, k], tables[v], f"{v}: accuracy", "viridis", 0.0, 1.0, "{:.2f}")
    if others:
        for k, v in enumerate(others):
            diff = tables[v] - tables["initial"]
            draw(
                axes[1, k],
                diff,
                f"{v} - initial",
                "RdBu",
                -max(0.05, np.abs(diff).max()),
                max(0.05, np.abs(diff).max()),
                "{:+.2f}",
            )
        for k in range(len(others), n_cols):
            axes[1, k].axis("off")
    fig.suptitle(
        f"AV-Digits, trained at audio SNR {snr_label(train[0])}, image SNR "
        f"{snr_label(train[1])} (red box)",
        fontsize=font + 3,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    """`python -m mmfusion_keras.experiments.snr_grid [options]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="python -m mmfusion_keras.experiments.snr_grid",
            description="Fusion depth vs. noise on AV-Digits (Barnum et al. 2020).",
        )
    )
    args = parser.parse_args(argv)
    args.command_line = "python -m mmfusion_keras.experiments.snr_grid " + " ".join(
        argv
    )
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
