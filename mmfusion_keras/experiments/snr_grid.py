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
`--full-grid` a 10 x 10 grid. `--seeds 0,1,2` repeats everything per seed
(weights, order and noise) and adds `snr_grid_summary.csv` (mean and
standard deviation per cell over the seeds); `--aggregate DIR,DIR,...`
writes that summary (and the heatmaps of the means) from runs made
separately, e.g. one process per seed. The paper's other figures:

- `--train-grid` (Fig. 2): one model per variant at every training pair
  of `--train-audio-snrs` x `--train-image-snrs` (default 4 x 4 = 16, as
  the paper), each tested on the grid; `snr_train_grid_<variant>.png`
  shows one heatmap per training pair (the pair boxed in red).
- `--unimodal-curves` (Fig. 3-4): the image-only model (`initial_no_audio`)
  trained at each of `--train-image-snrs` and the audio-only model
  (`initial_no_image`) at each of `--train-audio-snrs`, each tested over
  its own modality's test SNRs (the other input is zeroed by the model);
  `snr_curves.png` plots accuracy against test SNR, one line per
  training SNR.

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

from mmfusion_keras.runs import atomic_write
from mmfusion_keras.runs import write_json

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
    "seed",
)
SUMMARY_FIELDS = CSV_FIELDS[:5] + ("mean", "std", "num_seeds", "num_test")


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
        "--seeds",
        default=None,
        help="comma-separated seeds: the whole run once per seed, plus "
        "snr_grid_summary.csv with the mean and std per cell (overrides --seed)",
    )
    parser.add_argument(
        "--train-grid",
        action="store_true",
        help="Fig. 2: train at every pair of --train-audio-snrs x "
        "--train-image-snrs instead of --train-snr",
    )
    parser.add_argument(
        "--unimodal-curves",
        action="store_true",
        help="Fig. 3-4: image-only and audio-only models (initial fusion with "
        "the other input zeroed) trained at each of --train-image-snrs / "
        "--train-audio-snrs, tested over their own modality's test SNRs",
    )
    parser.add_argument(
        "--train-audio-snrs",
        default=None,
        help="training audio SNRs of --train-grid / --unimodal-curves "
        "(default: the test audio SNRs)",
    )
    parser.add_argument(
        "--train-image-snrs",
        default=None,
        help="training image SNRs of --train-grid / --unimodal-curves "
        "(default: the test image SNRs)",
    )
    parser.add_argument(
        "--aggregate",
        default=None,
        help="comma-separated output directories of earlier runs: write the "
        "mean/std summary and heatmaps of their snr_grid.csv to --output "
        "(no training)",
    )
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
    parser.add_argument(
        "--run-eagerly",
        action="store_true",
        help="do not compile the train step (faster for tiny smoke runs)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --output (refused "
        "otherwise; each file is replaced only once the new one is written)",
    )
    parser.add_argument("--verbose", type=int, default=1)
    return parser


# What a run (or `--aggregate`) writes into `--output`.
OUTPUT_FILES = (
    "snr_grid.csv",
    "snr_grid_summary.csv",
    "snr_grid_summary.md",
    "snr_grid.json",
    "snr_grid.png",
    "snr_curves.png",
)


def _check_output(args):
    """Refuses an `--output` that holds an earlier run, unless --overwrite."""
    directory = args.output
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(
            f"snr-grid: --output {directory!r} is a file; expected a directory."
        )
    if not os.path.isdir(directory) or getattr(args, "overwrite", False):
        return
    existing = sorted(
        name
        for name in os.listdir(directory)
        if name in OUTPUT_FILES or name.startswith("snr_train_grid_")
    )
    if existing:
        raise ValueError(
            f"snr-grid: --output {directory!r} already holds a run "
            f"({', '.join(existing)}); pass --overwrite to replace it or "
            "choose another directory."
        )


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


def _snr_list(text):
    return [parse_snr(x) for x in text.split(",")]


def _jobs(args, variants, train, audio_snrs, image_snrs):
    """`(variant, (train audio, train image), [(test audio, test image)])`."""
    grid = [(a, v) for a in audio_snrs for v in image_snrs]
    train_audio = _snr_list(args.train_audio_snrs) if args.train_audio_snrs else None
    train_image = _snr_list(args.train_image_snrs) if args.train_image_snrs else None
    if args.unimodal_curves:
        return [
            ("initial_no_audio", (None, v), [(None, t) for t in image_snrs])
            for v in (train_image or image_snrs)
        ] + [
            ("initial_no_image", (a, None), [(t, None) for t in audio_snrs])
            for a in (train_audio or audio_snrs)
        ]
    if args.train_grid:
        pairs = [
            (a, v)
            for a in (train_audio or audio_snrs)
            for v in (train_image or image_snrs)
        ]
        return [(variant, pair, grid) for pair in pairs for variant in variants]
    return [(variant, tuple(train), grid) for variant in variants]


def _settings(args):
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants:
        raise ValueError("snr-grid: `--variants` is empty.")
    parsed = {v: parse_variant(v) for v in variants}
    train = _snr_list(args.train_snr)
    if len(train) != 2:
        raise ValueError(
            "snr-grid: `--train-snr` takes two values 'audio,image'. "
            f"Received: {args.train_snr!r}"
        )
    if args.full_grid:
        audio_snrs = [parse_snr(s) for s in FULL_SNRS]
        image_snrs = list(audio_snrs)
    else:
        audio_snrs = _snr_list(args.audio_snrs or ",".join(SMALL_AUDIO_SNRS))
        image_snrs = _snr_list(args.image_snrs or ",".join(SMALL_IMAGE_SNRS))
    if args.seeds:
        try:
            seeds = [int(x) for x in args.seeds.split(",")]
        except ValueError:
            seeds = []
        if not seeds:
            raise ValueError(
                "snr-grid: `--seeds` takes comma-separated integers, e.g. 0,1,2. "
                f"Received: {args.seeds!r}"
            )
    else:
        seeds = [args.seed]
    return variants, parsed, train, audio_snrs, image_snrs, seeds


def run(args):
    """Runs the study for parsed `args`; returns the list of CSV rows."""
    import keras

    from mmfusion_keras.models.early_fusion import build_early_fusion_model

    start = time.time()
    _check_output(args)
    if args.aggregate:
        return aggregate(args)
    variants, parsed, train, audio_snrs, image_snrs, seeds = _settings(args)
    jobs = _jobs(args, variants, train, audio_snrs, image_snrs)
    variants = list(dict.fromkeys(variant for variant, _, _ in jobs))
    for variant in variants:
        parsed.setdefault(variant, parse_variant(variant))
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

    _log(
        args,
        f"snr-grid: {len(jobs)} model(s) x {len(seeds)} seed(s) "
        f"(backend {keras.config.backend()})",
    )
    noise = {"convention": args.snr_convention, "order": args.noise_order}
    rows, timings = [], {}
    data_time = 0.0
    for seed in seeds:
        t0 = time.time()
        needed_audio = list(dict.fromkeys(a for _, _, t in jobs for a, _ in t))
        needed_image = list(dict.fromkeys(v for _, _, t in jobs for _, v in t))
        test_audio, test_images, y_test = _test_inputs(
            needed_audio, needed_image, seed, args.max_test, noise
        )
        if args.last_frames is not None:
            test_audio = {a: x[:, -args.last_frames :] for a, x in test_audio.items()}
        data_time += time.time() - t0
        train_sets = {}
        for variant, pair, tests in jobs:
            if pair not in train_sets:
                t0 = time.time()
                ds = _load("train", pair[0], pair[1], seed, args.max_train, noise)
                x_train = ds.inputs
                if args.last_frames is not None:
                    x_train = {
                        **x_train,
                        "audio": x_train["audio"][:, -args.last_frames :],
                    }
                train_sets = {pair: (x_train, ds.labels)}  # one pair kept at a time
                data_time += time.time() - t0
            x_train, y_train = train_sets[pair]
            audio_shape = tuple(x_train["audio"].shape[1:])
            image_shape = tuple(x_train["image"].shape[1:])
            fusion, zero_input = parsed[variant]
            keras.utils.set_random_seed(seed)
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
                run_eagerly=args.run_eagerly,
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
            at_train = None
            for a, v in tests:
                probs = model.predict(
                    {"image": test_images[v], "audio": test_audio[a]},
                    batch_size=256,
                    verbose=0,
                )
                accuracy = float(np.mean(np.argmax(probs, axis=-1) == y_test))
                if (a, v) == pair:
                    at_train = accuracy
                rows.append(
                    {
                        "variant": variant,
                        "train_audio_snr": snr_label(pair[0]),
                        "train_image_snr": snr_label(pair[1]),
                        "test_audio_snr": snr_label(a),
                        "test_image_snr": snr_label(v),
                        "accuracy": round(accuracy, 6),
                        "num_test": int(len(y_test)),
                        "seed": seed,
                    }
                )
            t2 = time.time()
            key = variant
            if args.train_grid or args.unimodal_curves:
                key += f"@{snr_label(pair[0])},{snr_label(pair[1])}"
            if len(seeds) > 1:
                key += f"#seed{seed}"
            timings[key] = {
                "train_seconds": round(t1 - t0, 1),
                "eval_seconds": round(t2 - t1, 1),
                "final_train_accuracy": float(history.history["accuracy"][-1]),
                "params": int(model.count_params()),
            }
            _log(
                args,
                f"snr-grid: {key}: trained {t1 - t0:.0f} s, evaluated {t2 - t1:.0f} s"
                + (
                    f", test accuracy at the training SNRs {at_train:.3f}"
                    if at_train is not None
                    else ""
                ),
            )

    csv_path = os.path.join(args.output, "snr_grid.csv")
    _write_csv(csv_path, CSV_FIELDS, rows)
    summary_rows = summarize(rows)
    if len(seeds) > 1:
        _write_csv(
            os.path.join(args.output, "snr_grid_summary.csv"),
            SUMMARY_FIELDS,
            summary_rows,
        )
    mean_rows = [{**r, "accuracy": r["mean"]} for r in summary_rows]
    if args.unimodal_curves:
        png_path = os.path.join(args.output, "snr_curves.png")
        plot_curves(mean_rows, png_path)
    elif args.train_grid:
        png_path = os.path.join(args.output, "snr_train_grid_<variant>.png")
        for variant in variants:
            plot_train_grid(
                mean_rows,
                variant,
                audio_snrs,
                image_snrs,
                png_path.replace("<variant>", variant),
            )
    else:
        png_path = os.path.join(args.output, "snr_grid.png")
        plot_grid(mean_rows, variants, audio_snrs, image_snrs, train, png_path)
    params = {}
    for key, value in timings.items():
        params.setdefault(key.split("@")[0].split("#")[0], value["params"])
    summary = {
        "command": getattr(args, "command_line", None),
        "backend": keras.config.backend(),
        "keras": keras.__version__,
        "seed": seeds[0] if len(seeds) == 1 else None,
        "seeds": seeds,
        "variants": variants,
        "figure": "3-4" if args.unimodal_curves else "2" if args.train_grid else "1",
        "train_snr": [snr_label(s) for s in train],
        "train_pairs": sorted(
            {(r["train_audio_snr"], r["train_image_snr"]) for r in rows}
        ),
        "snr_convention": args.snr_convention,
        "noise_order": args.noise_order,
        "audio_snrs": [snr_label(s) for s in audio_snrs],
        "image_snrs": [snr_label(s) for s in image_snrs],
        "sizes": sizes,
        "params": params,
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
    write_json(os.path.join(args.output, "snr_grid.json"), summary)
    _log(
        args,
        f"snr-grid: wrote {csv_path} and {png_path} ({summary['wall_seconds']:.0f} s)",
    )
    return rows


def _save_figure(fig, path):
    """`fig.savefig` as PNG through a temporary file (see `atomic_write`)."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)


def _write_csv(path, fields, rows):
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summarize(rows):
    """Mean and (population) std of the accuracy per cell over seeds.

    A cell is (variant, training SNRs, test SNRs); returns one dict per
    cell with `mean`, `std`, `num_seeds` and `num_test`, in first-seen order.
    """
    cells = {}
    for r in rows:
        key = tuple(r[k] for k in CSV_FIELDS[:5])
        cells.setdefault(key, []).append(r)
    out = []
    for key, group in cells.items():
        values = np.asarray([float(r["accuracy"]) for r in group])
        out.append(
            {
                **dict(zip(CSV_FIELDS[:5], key)),
                "mean": round(float(values.mean()), 6),
                "std": round(float(values.std()), 6),
                "num_seeds": len({str(r.get("seed")) for r in group}),
                "num_test": group[0]["num_test"],
            }
        )
    return out


def aggregate(args):
    """`--aggregate`: the summary and heatmaps of several runs' CSVs."""
    rows = []
    settings = []
    for directory in [d.strip() for d in args.aggregate.split(",") if d.strip()]:
        path = os.path.join(directory, "snr_grid.csv")
        if not os.path.exists(path):
            raise ValueError(
                f"snr-grid --aggregate: no snr_grid.csv in {directory!r}. Expected "
                "the --output directory of an earlier snr-grid run."
            )
        with open(path, newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
        json_path = os.path.join(directory, "snr_grid.json")
        if os.path.exists(json_path):
            with open(json_path, encoding="utf-8") as f:
                settings.append(json.load(f))
    os.makedirs(args.output, exist_ok=True)
    summary_rows = summarize(rows)
    _write_csv(
        os.path.join(args.output, "snr_grid_summary.csv"), SUMMARY_FIELDS, summary_rows
    )
    variants = list(dict.fromkeys(r["variant"] for r in summary_rows))
    audio = list(dict.fromkeys(r["test_audio_snr"] for r in summary_rows))
    image = list(dict.fromkeys(r["test_image_snr"] for r in summary_rows))
    pairs = list(
        dict.fromkeys((r["train_audio_snr"], r["train_image_snr"]) for r in rows)
    )
    if len(pairs) == 1 and all(
        sum(1 for r in summary_rows if r["variant"] == v) == len(audio) * len(image)
        for v in variants
    ):
        plot_grid(
            [{**r, "accuracy": r["mean"]} for r in summary_rows],
            variants,
            [parse_snr(a) for a in audio],
            [parse_snr(v) for v in image],
            [parse_snr(x) for x in pairs[0]],
            os.path.join(args.output, "snr_grid.png"),
        )
    lines = markdown_summary(summary_rows, variants, audio, image)
    with atomic_write(os.path.join(args.output, "snr_grid_summary.md")) as f:
        f.write(lines)
    _log(args, lines)
    return summary_rows


def markdown_summary(summary_rows, variants, audio, image):
    """One Markdown table per variant: mean (std) per test cell."""
    out = []
    index = {
        (r["variant"], r["test_audio_snr"], r["test_image_snr"]): r
        for r in summary_rows
    }
    for variant in variants:
        out.append(f"\n{variant} (rows: test audio SNR, columns: test image SNR)\n")
        out.append("| audio \\ image | " + " | ".join(image) + " |")
        out.append("|---" * (len(image) + 1) + "|")
        for a in audio:
            cells = []
            for v in image:
                r = index.get((variant, a, v))
                cells.append(
                    ""
                    if r is None
                    else f"{float(r['mean']):.3f} ({float(r['std']):.3f})"
                )
            out.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def accuracy_table(rows, variant, audio_snrs, image_snrs):
    """`(len(audio_snrs), len(image_snrs))` accuracies of one variant."""
    index = {
        (r["test_audio_snr"], r["test_image_snr"]): float(r["accuracy"])
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
    _save_figure(fig, path)
    plt.close(fig)


def plot_train_grid(rows, variant, audio_snrs, image_snrs, path):
    """Fig. 2: one test-grid heatmap per training pair of `variant`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = [r for r in rows if r["variant"] == variant]
    train_audio = list(dict.fromkeys(r["train_audio_snr"] for r in rows))
    train_image = list(dict.fromkeys(r["train_image_snr"] for r in rows))
    a_labels = [snr_label(s) for s in audio_snrs]
    v_labels = [snr_label(s) for s in image_snrs]
    fig, axes = plt.subplots(
        len(train_audio),
        len(train_image),
        figsize=(1 + 2.2 * len(train_image), 1 + 2.2 * len(train_audio)),
        squeeze=False,
    )
    for i, ta in enumerate(train_audio):
        for j, tv in enumerate(train_image):
            ax = axes[i, j]
            cell = [
                r
                for r in rows
                if r["train_audio_snr"] == ta and r["train_image_snr"] == tv
            ]
            table = accuracy_table(cell, variant, audio_snrs, image_snrs)
            ax.imshow(table, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            for y in range(table.shape[0]):
                for x in range(table.shape[1]):
                    ax.text(
                        x, y, f"{table[y, x]:.2f}", ha="center", va="center", fontsize=6
                    )
            ax.set_xticks(range(len(v_labels)), v_labels, fontsize=6, rotation=90)
            ax.set_yticks(range(len(a_labels)), a_labels, fontsize=6)
            ax.set_title(f"train audio {ta}, image {tv}", fontsize=7)
            if ta in a_labels and tv in v_labels:
                y, x = a_labels.index(ta), v_labels.index(tv)
                ax.add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", lw=2
                    )
                )
    fig.suptitle(
        f"AV-Digits, {variant}: test accuracy (rows test audio SNR, columns test "
        "image SNR) per training pair (red box)",
        fontsize=8,
    )
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def plot_curves(rows, path):
    """Fig. 3-4: unimodal accuracy vs test SNR, one line per training SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        (
            "initial_no_audio",
            "train_image_snr",
            "test_image_snr",
            "image only (Fig. 3)",
        ),
        (
            "initial_no_image",
            "train_audio_snr",
            "test_audio_snr",
            "audio only (Fig. 4)",
        ),
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), squeeze=False)
    for ax, (variant, train_key, test_key, title) in zip(axes[0], panels):
        sub = [r for r in rows if r["variant"] == variant]
        tests = list(dict.fromkeys(r[test_key] for r in sub))
        for trained in dict.fromkeys(r[train_key] for r in sub):
            line = {
                r[test_key]: float(r["accuracy"])
                for r in sub
                if r[train_key] == trained
            }
            ax.plot(
                range(len(tests)),
                [line[t] for t in tests],
                marker="o",
                label=f"trained at {trained}",
            )
        ax.set_xticks(range(len(tests)), tests)
        ax.set_xlabel("test SNR")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title)
        if sub:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
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
