"""AV-MNIST-style recipes of `mmfusion reproduce`: early-fusion-avmnist and
mfas-avmnist.

Both read the user's own handwritten digits and spoken digits (e.g. MNIST
and the Free Spoken Digit Dataset) from a folder with two manifests in the
`load_manifest` format::

    <root>/images/manifest.csv    label,image[,split]   (PNG/JPEG, any size)
    <root>/audio/manifest.csv     label,audio[,split]   (WAV/FLAC/OGG/MP3)

`label` is the digit `0`..`9`; paths are relative to the manifest's folder.
The optional `split` column (`train` / `validation` / `test`) fixes the
split of every file (e.g. speaker-independent FSDD splits); without it each
modality is split 8:1:1 per digit with `split_seed` (Barnum et al., A.3:
"split each of the two datasets into training, testing, and validation sets
with an 8 : 1 : 1 ratio"). Pairs are drawn inside a split only, an image
with a clip of the same digit, so no image or clip is in two splits.

* **early-fusion-avmnist** (Barnum, Talukder, Yue 2020): pairs drawn
  uniformly from all same-digit (image, clip) pairs of a split (A.3: "a
  dataset containing all image and audio pairs with the same label", 87,516
  training pairs drawn from it, A.2); white noise at a chosen SNR on the
  image and on the clip **before** the clip is front-padded with zeros to
  the longest clip (A.3); spectrogram with 400-sample windows, stride 200,
  201 bins; the C-LSTM models of A.2 (`build_early_fusion_model`: initial,
  second and FC fusion, and the unimodal ones, section 5.3) trained at audio
  SNR 0.5 / image SNR 0.25 (Fig. 1) and tested over a 10 x 10 SNR grid
  (section 5.2: "100 different audio-visual SNR regimes").
* **mfas-avmnist** (Perez-Rua et al. 2019, section 4.1): images with 75 %
  of their energy removed by PCA, noisy spectrograms 112 x 112, 55,000 /
  5,000 / 10,000 pairs, a LeNet-5 on the spectrogram and a LeNet-3 on the
  image trained first and frozen, then MFAS and random search at the
  paper's budget (180 architectures, E_search = 3, L = 4, K = 10,
  E_train = 2) on cached features, the top 5 of each trained to completion.

Noise is drawn per pair (early fusion) or per clip and image (MFAS, whose
noise is part of the dataset) from `numpy.random.default_rng([seed, ...])`,
so a pair gets the same noise pattern at every SNR, only scaled.
"""

import csv
import os

import numpy as np

DIGITS = tuple(str(d) for d in range(10))
SPLITS = ("train", "validation", "test")
AV_LAYOUT = (
    "<root>/images/manifest.csv (columns label,image[,split]; label = digit "
    "0-9, image = path relative to <root>/images) and <root>/audio/manifest.csv "
    "(columns label,audio[,split]; audio = path relative to <root>/audio)"
)


# --- data ----------------------------------------------------------------------


def check_av_root(root):
    """One-line errors for a wrong root or a missing manifest."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"AV-MNIST-style data root not found: '{root}'. Expected {AV_LAYOUT}."
        )
    missing = [
        os.path.join(root, sub, "manifest.csv")
        for sub in ("images", "audio")
        if not os.path.isfile(os.path.join(root, sub, "manifest.csv"))
    ]
    if missing:
        raise FileNotFoundError(
            f"Missing manifest(s) {missing} in the data root '{root}'. Expected "
            f"{AV_LAYOUT}."
        )


def _split_column(folder):
    with open(
        os.path.join(folder, "manifest.csv"), newline="", encoding="utf-8-sig"
    ) as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "split" not in columns:
            return None
        rows = [
            {(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader
        ]
    values = [r.get("split", "") for r in rows]
    bad = sorted({v for v in values if v not in SPLITS})
    if bad:
        raise ValueError(
            f"Unknown split values {bad} in '{os.path.join(folder, 'manifest.csv')}'. "
            f"Expected one of {list(SPLITS)} in every row (or no split column)."
        )
    return np.array(values)


def stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed=0):
    """`{split: indices}`: every class cut `fractions` (at least one per split).

    Raises:
        ValueError: a class with fewer than 3 examples.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 3:
            raise ValueError(
                f"Digit {DIGITS[c]} has only {len(idx)} example(s): an 8:1:1 split "
                "needs at least 3 per digit (or give a split column)."
            )
        n_val = max(1, int(round(fractions[1] * len(idx))))
        n_test = max(1, int(round(fractions[2] * len(idx))))
        n_train = len(idx) - n_val - n_test
        out["train"] += idx[:n_train].tolist()
        out["validation"] += idx[n_train : n_train + n_val].tolist()
        out["test"] += idx[n_train + n_val :].tolist()
    return {s: np.sort(np.asarray(v, "int64")) for s, v in out.items()}


def load_av_manifests(root, params, log=print):
    """Reads both manifests; returns a dict with images, clips, labels, splits.

    Returns:
        `{"images": (N, H, W, 1) float32 in [0, 1], "image_labels",
        "image_paths", "clips": list of 1-D float32 waveforms,
        "clip_labels", "clip_paths", "sample_rate", "length" (samples after
        front padding), "split": {"image": {split: indices}, "audio":
        {...}}, "split_source"}`.
    """
    from mmfusion_keras.datasets.manifest import load_manifest

    check_av_root(root)
    folders = {
        m: os.path.join(root, sub)
        for m, sub in (("image", "images"), ("audio", "audio"))
    }
    images = load_manifest(
        folders["image"],
        class_names=DIGITS,
        image_size=tuple(params["image_size"]),
        image_mode="L",
    )
    if "image" not in images.inputs:
        raise ValueError(
            f"'{folders['image']}/manifest.csv' has no 'image' column. Expected {AV_LAYOUT}."
        )
    rate = int(params["sample_rate"])
    max_samples = (
        None
        if params.get("audio_seconds") is None
        else int(params["audio_seconds"] * rate)
    )
    audio = load_manifest(
        folders["audio"], class_names=DIGITS, sample_rate=rate, max_samples=max_samples
    )
    if "audio" not in audio.inputs:
        raise ValueError(
            f"'{folders['audio']}/manifest.csv' has no 'audio' column. Expected {AV_LAYOUT}."
        )
    lengths = np.minimum(audio.metadata["audio_length"], audio.inputs["audio"].shape[1])
    clips = [audio.inputs["audio"][i, : lengths[i]].copy() for i in range(len(lengths))]
    data = {
        "images": images.inputs["image"].astype("float32"),
        "image_labels": images.labels.astype("int32"),
        "image_paths": images.metadata["image_path"],
        "clips": clips,
        "clip_labels": audio.labels.astype("int32"),
        "clip_paths": audio.metadata["audio_path"],
        "sample_rate": rate,
        "length": int(max(lengths)),
        "split": {},
        "split_source": {},
    }
    for modality, labels in (
        ("image", data["image_labels"]),
        ("audio", data["clip_labels"]),
    ):
        column = _split_column(folders[modality])
        if column is None:
            data["split"][modality] = stratified_split(
                labels, tuple(params["split"]), int(params["split_seed"])
            )
            data["split_source"][modality] = (
                f"stratified {params['split']} per digit, split_seed {params['split_seed']}"
            )
        else:
            data["split"][modality] = {
                s: np.flatnonzero(column == s).astype("int64") for s in SPLITS
            }
            data["split_source"][modality] = "split column of the manifest"
    for split in SPLITS:
        have_image = set(data["image_labels"][data["split"]["image"][split]].tolist())
        have_audio = set(data["clip_labels"][data["split"]["audio"][split]].tolist())
        if have_image != have_audio:
            raise ValueError(
                f"The {split} split cannot be paired by digit: digits with images "
                f"{sorted(have_image)}, digits with clips {sorted(have_audio)}. Every "
                "digit of a split needs both an image and a clip."
            )
    log(
        f"  {len(data['images'])} images, {len(clips)} clips (longest "
        f"{data['length'] / rate:.2f} s at {rate} Hz)"
    )
    return data


def draw_pairs(image_labels, clip_labels, image_idx, clip_idx, n, rng):
    """`n` (image, clip) pairs drawn uniformly from all same-digit pairs.

    A pair of digit `d` is drawn with probability proportional to
    `images(d) * clips(d)`, then the image and the clip uniformly among
    that digit's (Barnum et al., A.2-A.3: pairs "randomly selected" from
    the dataset of "all image and audio pairs with the same label").

    Returns:
        `(image indices, clip indices, labels)`, int64 / int64 / int32.
    """
    image_idx, clip_idx = np.asarray(image_idx), np.asarray(clip_idx)
    by_digit_img = {d: image_idx[image_labels[image_idx] == d] for d in range(10)}
    by_digit_clip = {d: clip_idx[clip_labels[clip_idx] == d] for d in range(10)}
    weights = np.array(
        [len(by_digit_img[d]) * len(by_digit_clip[d]) for d in range(10)], "float64"
    )
    digits = rng.choice(10, size=int(n), p=weights / weights.sum())
    images = np.empty(len(digits), "int64")
    clips = np.empty(len(digits), "int64")
    for d in np.unique(digits):
        rows = np.flatnonzero(digits == d)
        images[rows] = rng.choice(by_digit_img[d], size=len(rows))
        clips[rows] = rng.choice(by_digit_clip[d], size=len(rows))
    return images, clips, digits.astype("int32")


def noisy_front_padded(clip, length, snr_db, rng):
    """White noise on the clip at exactly `snr_db` over its samples, then
    front padding with zeros to `length` (Barnum et al., A.3's order).
    `snr_db=None` adds no noise."""
    clip = np.asarray(clip, "float64")
    if snr_db is not None:
        noise = rng.standard_normal(len(clip))
        power = np.mean(np.square(clip))
        target = power / 10.0 ** (snr_db / 10.0)
        clip = clip + noise * np.sqrt(target / max(np.mean(np.square(noise)), 1e-12))
    out = np.zeros(length, "float32")
    clip = clip[-length:]
    out[length - len(clip) :] = clip
    return out


def noisy_image(image, snr_db, rng):
    """White noise at `snr_db` relative to the image's own power."""
    if snr_db is None:
        return image
    power = float(np.mean(np.square(image, dtype="float64")))
    std = np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (image + rng.standard_normal(image.shape) * std).astype("float32")


def stft_frames(length, frame=400, step=200):
    return 1 + (length - frame) // step


def log_spectrogram(waves, frame=400, step=200):
    """`(N, frames, frame // 2 + 1)` log magnitude, Hann window, valid framing
    (A.3: "400 samples, 201 frequency bins, and a stride of 200 samples")."""
    waves = np.asarray(waves, "float32")
    n = stft_frames(waves.shape[1], frame, step)
    index = np.arange(frame)[None, :] + step * np.arange(n)[:, None]
    window = np.hanning(frame + 1)[:-1].astype("float32")
    frames = waves[:, index] * window
    return np.log(np.abs(np.fft.rfft(frames, axis=-1)) + 1e-6).astype("float32")


def _snr_db(value, convention):
    from mmfusion_keras.experiments.snr_grid import parse_snr
    from mmfusion_keras.experiments.snr_grid import snr_db

    return snr_db(parse_snr(value), convention)


def _snr_label(value):
    from mmfusion_keras.experiments.snr_grid import parse_snr
    from mmfusion_keras.experiments.snr_grid import snr_label

    return snr_label(parse_snr(value))


def _describe(data):
    out = {
        "images": int(len(data["images"])),
        "clips": int(len(data["clips"])),
        "image_shape": list(data["images"].shape[1:]),
        "sample_rate": data["sample_rate"],
        "padded_length": data["length"],
        "split_source": data["split_source"],
    }
    for modality, key in (("image", "image_labels"), ("audio", "clip_labels")):
        out[f"{modality}_per_split"] = {
            s: int(len(i)) for s, i in data["split"][modality].items()
        }
        out[f"{modality}_per_digit"] = np.bincount(data[key], minlength=10).tolist()
    return out


def _holdout_fold(data, pairs):
    """The one 8:1:1 fold; `pairs` maps split -> number of pairs drawn."""
    return [
        {
            "name": "holdout",
            "held_out": "test split (8:1:1 per modality, pairs inside a split)",
            "indices": {s: np.arange(int(pairs[s])) for s in SPLITS},
            "groups": {
                f"{m}_{s}": int(len(data["split"][m][s]))
                for m in ("image", "audio")
                for s in SPLITS
            },
        }
    ]


def fold_pairs(data, n_pairs, seed):
    """`{split: (image idx, clip idx, labels)}` for one (seed, fold)."""
    out = {}
    for k, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 101, k])
        out[split] = draw_pairs(
            data["image_labels"],
            data["clip_labels"],
            data["split"]["image"][split],
            data["split"]["audio"][split],
            n_pairs[split],
            rng,
        )
    return out


# --- early fusion (Barnum et al. 2020) ----------------------------------------


def _noisy_pairs_class():
    import keras

    class NoisyPairs(keras.utils.PyDataset):
        """Batches of noisy (image, spectrogram) pairs made on the fly.

        The noise of pair `i` comes from `default_rng([seed, split, modality,
        i])`: fixed over epochs and the same pattern at every SNR.
        """

        def __init__(
            self, data, pairs, split, audio_db, image_db, batch_size, seed, shuffle
        ):
            super().__init__()
            self.data, self.split_id = data, SPLITS.index(split)
            self.images, self.clips, self.labels = pairs
            self.audio_db, self.image_db = audio_db, image_db
            self.batch_size, self.seed, self.shuffle = (
                int(batch_size),
                int(seed),
                shuffle,
            )
            self.set_epoch(0)

        def set_epoch(self, epoch):
            n = len(self.labels)
            self.order = (
                np.random.default_rng([self.seed, 7, epoch]).permutation(n)
                if self.shuffle
                else np.arange(n)
            )

        def on_epoch_end(self):
            self._epoch = getattr(self, "_epoch", 0) + 1
            self.set_epoch(self._epoch)

        def __len__(self):
            return -(-len(self.labels) // self.batch_size)

        def __getitem__(self, index):
            rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
            length = self.data["length"]
            waves = np.stack(
                [
                    noisy_front_padded(
                        self.data["clips"][self.clips[i]],
                        length,
                        self.audio_db,
                        np.random.default_rng([self.seed, self.split_id, 1, i]),
                    )
                    for i in rows
                ]
            )
            images = np.stack(
                [
                    noisy_image(
                        self.data["images"][self.images[i]],
                        self.image_db,
                        np.random.default_rng([self.seed, self.split_id, 0, i]),
                    )
                    for i in rows
                ]
            )
            x = {"image": images, "audio": log_spectrogram(waves)}
            return x, self.labels[rows]

    return NoisyPairs


class _DigitsFolderRecipe:
    """What both AV-MNIST recipes share: the digits folder and its pairs."""

    def __init__(self, recipe, params):
        self.recipe, self.params = recipe, params

    def load(self, root, log):
        return load_av_manifests(root, self.params, log)

    def describe(self, data):
        return _describe(data)

    def _pairs(self):
        p = self.params
        return {
            "train": p["train_pairs"],
            "validation": p["validation_pairs"],
            "test": p["test_pairs"],
        }


class EarlyFusionAvmnist(_DigitsFolderRecipe):
    """early-fusion-avmnist: fusion depth vs noise on the user's digits."""

    def folds(self, data):
        if stft_frames(data["length"]) < 1:
            raise ValueError(
                f"The longest clip has {data['length']} samples: the spectrogram "
                "(400-sample windows) needs at least 400. Check sample_rate."
            )
        return _holdout_fold(data, self._pairs())

    def run_fold(self, data, fold, ctx, variants):
        import keras

        from mmfusion_keras.experiments.snr_grid import parse_variant
        from mmfusion_keras.models.early_fusion import build_early_fusion_model

        p = self.params
        convention = p["snr_convention"]
        pairs = fold_pairs(data, self._pairs(), ctx.seed)
        NoisyPairs = _noisy_pairs_class()
        train_cell = (
            _snr_label(p["train_audio_snr"]),
            _snr_label(p["train_image_snr"]),
        )
        audio_grid = [_snr_label(a) for a in p["test_audio_snrs"]]
        image_grid = [_snr_label(v) for v in p["test_image_snrs"]]
        frames = stft_frames(data["length"])
        for variant in variants:
            if ctx.done(variant):
                ctx.log(f"  {variant}: done (skipped)")
                continue
            fusion, zero_input = parse_variant(variant)
            keras.utils.set_random_seed(ctx.seed)
            model = build_early_fusion_model(
                fusion,
                image_shape=tuple(data["images"].shape[1:]),
                audio_shape=(frames, 201),
                units=p["units"],
                dense_units=p["dense_units"],
                zero_input=zero_input,
            )
            model.compile(
                keras.optimizers.Adam(p["learning_rate"]),
                "sparse_categorical_crossentropy",
                jit_compile=p["jit_compile"],
                run_eagerly=bool(p["run_eagerly"]),
            )
            train = NoisyPairs(
                data,
                pairs["train"],
                "train",
                _snr_db(p["train_audio_snr"], convention),
                _snr_db(p["train_image_snr"], convention),
                p["batch_size"],
                ctx.seed,
                shuffle=True,
            )
            model.fit(train, epochs=int(p["epochs"]), verbose=0)
            grid = []
            labels = pairs["test"][2]
            for a in p["test_audio_snrs"]:
                for v in p["test_image_snrs"]:
                    test = NoisyPairs(
                        data,
                        pairs["test"],
                        "test",
                        _snr_db(a, convention),
                        _snr_db(v, convention),
                        p["eval_batch_size"],
                        ctx.seed,
                        shuffle=False,
                    )
                    probs = model.predict(test, verbose=0)
                    acc = float(np.mean(probs.argmax(-1) == labels))
                    grid.append([_snr_label(a), _snr_label(v), acc])
            cells = {(a, v): acc for a, v, acc in grid}
            metrics = {
                "acc_train_snr": cells.get(train_cell),
                "acc_clean": cells.get(("orig", "orig")),
                "acc_grid_mean": float(np.mean([c[2] for c in grid])),
            }
            initial = self._initial_grid(ctx, variant)
            if initial is not None:
                shared = [k for k in cells if k in initial]
                metrics["cells_initial_ge"] = (
                    float(np.mean([initial[k] >= cells[k] for k in shared]))
                    if shared
                    else None
                )
            ctx.save(
                variant,
                metrics,
                {
                    "grid": grid,
                    "audio_snrs": audio_grid,
                    "image_snrs": image_grid,
                    "train_cell": list(train_cell),
                    "parameters": int(model.count_params()),
                    "epochs": int(p["epochs"]),
                    "pairs": {s: int(len(pairs[s][2])) for s in SPLITS},
                },
            )

    @staticmethod
    def _initial_grid(ctx, variant):
        import json

        if variant == "initial" or not ctx.done("initial"):
            return None
        with open(ctx.unit_path("initial"), encoding="utf-8") as f:
            unit = json.load(f)
        return {(a, v): acc for a, v, acc in unit["details"]["grid"]}

    def markdown_extra(self, report):
        """Accuracy per SNR cell (mean over seeds), per variant, and the
        difference to initial fusion (Fig. 1's second row)."""
        units = report["units"]
        lines = [
            "## Accuracy per SNR cell (mean over seeds; rows: test audio SNR, "
            "columns: test image SNR; the training cell in bold)",
            "",
        ]
        means = {}
        for variant in report["results"]:
            rows = [u for u in units if u["variant"] == variant]
            if not rows:
                continue
            cells = {}
            for u in rows:
                for a, v, acc in u["details"]["grid"]:
                    cells.setdefault((a, v), []).append(acc)
            means[variant] = {k: float(np.mean(x)) for k, x in cells.items()}
            means[variant]["_axes"] = (
                rows[0]["details"]["audio_snrs"],
                rows[0]["details"]["image_snrs"],
            )
            means[variant]["_train"] = tuple(rows[0]["details"]["train_cell"])
        for variant, cells in means.items():
            lines += self._grid_table(
                f"{variant}: accuracy (%)", cells, lambda x: f"{100 * x:.1f}"
            )
            if variant != "initial" and "initial" in means:
                diff = {
                    k: cells[k] - means["initial"][k]
                    for k in cells
                    if not isinstance(k, str) and k in means["initial"]
                }
                diff["_axes"], diff["_train"] = cells["_axes"], cells["_train"]
                lines += self._grid_table(
                    f"{variant} minus initial (points; the paper: <= 0 in every cell "
                    "for fc, < 0 except at low audio SNR for second)",
                    diff,
                    lambda x: f"{100 * x:+.1f}",
                )
        return lines

    @staticmethod
    def _grid_table(title, cells, fmt):
        audio, image = cells["_axes"]
        train = cells["_train"]
        lines = [f"### {title}", "", "| audio \\ image | " + " | ".join(image) + " |"]
        lines.append("|---" * (len(image) + 1) + "|")
        for a in audio:
            row = []
            for v in image:
                value = cells.get((a, v))
                text = "—" if value is None else fmt(value)
                row.append(f"**{text}**" if (a, v) == train else text)
            lines.append(f"| {a} | " + " | ".join(row) + " |")
        return lines + [""]


# --- MFAS (Perez-Rua et al. 2019) ----------------------------------------------


def remove_energy_pca(train_images, images, removed=0.75):
    """Keeps the leading principal components (fit on `train_images`) that
    hold `1 - removed` of the variance and reconstructs (MFAS 4.1: "MNIST
    images, with 75% of their energy removed by PCA"; energy read as the
    variance around the training mean, the components with the most
    variance kept, as in CentralNet's AV-MNIST)."""
    if not removed:
        return images
    shape = images.shape
    flat = train_images.reshape(len(train_images), -1).astype("float64")
    mean = flat.mean(0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    energy = np.cumsum(s**2) / max(np.sum(s**2), 1e-12)
    k = int(np.searchsorted(energy, 1.0 - removed) + 1)
    basis = vt[:k]
    x = images.reshape(len(images), -1) - mean
    out = (x @ basis.T) @ basis + mean
    return out.reshape(shape).astype("float32")


def mel_spectrograms(waves, sample_rate, size, window):
    """`(N, frames, bins, 1)` log-mel spectrograms of `size = (frames, bins)`
    (MFAS: "112 x 112 spectrograms"): the hop spreads `frames` frames over
    the padded clip; the last `frames` are kept (the speech is at the end)."""
    import keras

    frames, bins = size
    length = waves.shape[1]
    stride = max(1, length // frames)
    window = max(int(window), stride)
    fft = int(2 ** np.ceil(np.log2(window)))
    layer = keras.layers.MelSpectrogram(
        fft_length=fft,
        sequence_stride=stride,
        sequence_length=window,
        sampling_rate=sample_rate,
        num_mel_bins=bins,
        max_freq=sample_rate / 2,
    )
    model = keras.Sequential(
        [keras.Input((length,)), layer, keras.layers.Permute((2, 1))]
    )
    out = np.asarray(model.predict(waves, batch_size=256, verbose=0), "float32")
    if out.shape[1] >= frames:
        out = out[:, -frames:]
    else:
        out = np.pad(out, ((0, 0), (frames - out.shape[1], 0), (0, 0)), mode="edge")
    return out[..., None]


class MfasAvmnist(_DigitsFolderRecipe):
    """mfas-avmnist: MFAS vs random search on the user's digits (Tables 1-2)."""

    def folds(self, data):
        return _holdout_fold(data, self._pairs())

    def _prepare(self, data, ctx):
        """Noisy inputs, unimodal LeNets (kept in the work folder) and the
        standardised candidate features of the pairs of every split."""
        import keras

        from mmfusion_keras.search.av_digits_search import build_lenet
        from mmfusion_keras.search.av_digits_search import conv_layer_names
        from mmfusion_keras.search.fusion_network import build_feature_extractor
        from mmfusion_keras.search.fusion_network import x_name
        from mmfusion_keras.search.fusion_network import y_name

        p, seed = self.params, ctx.seed
        split = data["split"]
        images = remove_energy_pca(
            data["images"][split["image"]["train"]],
            data["images"],
            p["image_energy_removed"],
        )
        image_db = None if p["image_snr_db"] is None else float(p["image_snr_db"])
        images = np.stack(
            [
                noisy_image(im, image_db, np.random.default_rng([seed, 0, i]))
                for i, im in enumerate(images)
            ]
        )
        audio_db = None if p["audio_snr_db"] is None else float(p["audio_snr_db"])
        waves = np.stack(
            [
                noisy_front_padded(
                    c, data["length"], audio_db, np.random.default_rng([seed, 1, i])
                )
                for i, c in enumerate(data["clips"])
            ]
        )
        spec = mel_spectrograms(
            waves, data["sample_rate"], p["spectrogram_size"], p["mel_window"]
        )
        mean, std = (
            spec[split["audio"]["train"]].mean(),
            spec[split["audio"]["train"]].std() + 1e-6,
        )
        spec = ((spec - mean) / std).astype("float32")
        inputs = {"audio": spec, "image": images}
        labels = {"audio": data["clip_labels"], "image": data["image_labels"]}
        nets = {}
        specs = (
            ("audio", "audio_lenet", p["audio_filters"]),
            ("image", "image_lenet", p["image_filters"]),
        )
        for i, (modality, name, filters) in enumerate(specs):
            path = os.path.join(ctx.workdir, f"{name}.keras")
            if os.path.exists(path):
                nets[modality] = keras.saving.load_model(path, compile=False)
                continue
            ctx.log(f"  training the unimodal {name} ({len(filters)} conv layers)")
            keras.utils.set_random_seed(seed + i)
            net = build_lenet(inputs[modality].shape[1:], filters, 10, name, modality)
            tr, va = split[modality]["train"], split[modality]["validation"]
            net.compile(
                optimizer=keras.optimizers.Adam(p["unimodal_learning_rate"]),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=p["jit_compile"],
                run_eagerly=bool(p["run_eagerly"]),
            )
            net.fit(
                inputs[modality][tr],
                labels[modality][tr],
                validation_data=(inputs[modality][va], labels[modality][va]),
                epochs=int(p["unimodal_epochs"]),
                batch_size=int(p["batch_size"]),
                callbacks=[
                    keras.callbacks.EarlyStopping(
                        monitor="val_accuracy",
                        patience=int(p["unimodal_patience"]),
                        restore_best_weights=True,
                    )
                ],
                verbose=0,
            )
            net.save(path)
            nets[modality] = net
        f, g = nets["audio"], nets["image"]
        f.trainable = g.trainable = False
        f_layers, g_layers = conv_layer_names(f), conv_layer_names(g)
        cache = os.path.join(ctx.workdir, "features.npz")
        if os.path.exists(cache):
            with np.load(cache) as z:
                feats = {k: np.array(z[k]) for k in z.files}
        else:
            # One pass per network: the pooled conv features and the softmax.
            xs = build_feature_extractor(f, f_layers + [f.layers[-1].name]).predict(
                spec, batch_size=256, verbose=0
            )
            ys = build_feature_extractor(g, g_layers + [g.layers[-1].name]).predict(
                images, batch_size=256, verbose=0
            )
            feats = {
                x_name(i + 1): np.asarray(v, "float32") for i, v in enumerate(xs[:-1])
            }
            feats.update(
                {y_name(i + 1): np.asarray(v, "float32") for i, v in enumerate(ys[:-1])}
            )
            feats["p_audio"] = np.asarray(xs[-1], "float32")
            feats["p_image"] = np.asarray(ys[-1], "float32")
            np.savez(cache, **feats)
        pairs = fold_pairs(data, self._pairs(), seed)
        per_split = {}
        for s in SPLITS:
            img, clip, lab = pairs[s]
            per_split[s] = (
                {
                    k: v[clip] if k.startswith("x") else v[img]
                    for k, v in feats.items()
                    if k[0] in "xy"
                },
                lab,
                {"audio": feats["p_audio"][clip], "image": feats["p_image"][img]},
            )
        stats = {
            k: (v.mean(0), np.sqrt(v.var(0) + 1e-6))
            for k, v in per_split["train"][0].items()
        }
        for s in SPLITS:
            x, lab, probs = per_split[s]
            x = {
                k: ((v - stats[k][0]) / stats[k][1]).astype("float32")
                for k, v in x.items()
            }
            per_split[s] = (x, lab, probs)
        return {"splits": per_split, "M": len(f_layers), "N": len(g_layers)}

    def run_fold(self, data, fold, ctx, variants):
        import keras

        from mmfusion_keras.search.av_digits_search import _head_accuracy
        from mmfusion_keras.search.final_training import train_final
        from mmfusion_keras.search.fusion_architecture_search import (
            FusionArchitectureSearch,
        )
        from mmfusion_keras.search.search_space import SearchSpace

        p = self.params
        known = (
            "LeNet-5 (spectrogram)",
            "LeNet-3 (image)",
            "two-stream",
            "random",
            "MFAS",
        )
        for variant in variants:
            if variant not in known:
                raise ValueError(
                    f"--set variants: unknown variant {variant!r}. Expected some of "
                    f"{list(known)}."
                )
        prepared = None
        for variant in variants:
            if ctx.done(variant):
                ctx.log(f"  {variant}: done (skipped)")
                continue
            if prepared is None:
                prepared = self._prepare(data, ctx)
            splits = prepared["splits"]
            test_x, test_y, test_p = splits["test"]
            if variant in known[:3]:
                probs = {
                    "LeNet-5 (spectrogram)": test_p["audio"],
                    "LeNet-3 (image)": test_p["image"],
                    "two-stream": (test_p["audio"] + test_p["image"]) / 2,
                }[variant]
                ctx.save(
                    variant, {"test_acc": float(np.mean(probs.argmax(-1) == test_y))}
                )
                continue
            method = "mfas" if variant == "MFAS" else "random"
            space = SearchSpace(
                prepared["M"],
                prepared["N"],
                tuple(p["activations"]),
                int(p["max_layers"]),
            )
            keras.utils.set_random_seed(ctx.seed)
            search = FusionArchitectureSearch(
                space,
                splits["train"][:2],
                splits["validation"][:2],
                10,
                os.path.join(ctx.workdir, f"search_{method}"),
                method=method,
                budget=int(p["budget"]),
                num_samples=int(p["num_samples"]),
                search_iterations=p["search_iterations"] if method == "mfas" else None,
                epochs=int(p["epochs_per_architecture"]),
                units=int(p["search_units"]),
                batch_size=int(p["batch_size"]),
                learning_rate=float(p["search_learning_rate"]),
                run_eagerly=bool(p["run_eagerly"]),
                t_max=float(p["t_max"]),
                t_min=float(p["t_min"]),
                seed=ctx.seed,
                level_one=p["level_one"],
                temperature_schedule=p["temperature_schedule"],
            )
            top = search.run(verbose=False)
            finals = []
            for description, search_acc in top[: int(p["top_k"])]:
                head, val_acc, seconds = train_final(
                    description,
                    space,
                    splits["train"][:2],
                    splits["validation"][:2],
                    10,
                    units=int(p["final_units"]),
                    epochs=int(p["final_epochs"]),
                    batch_size=int(p["batch_size"]),
                    patience=int(p["final_patience"]),
                    seed=ctx.seed,
                    run_eagerly=bool(p["run_eagerly"]),
                )
                finals.append(
                    {
                        "description": [list(t) for t in description],
                        "search_val_accuracy": float(search_acc),
                        "val_accuracy": float(val_acc),
                        "test_accuracy": _head_accuracy(head, test_x, test_y),
                    }
                )
            best = max(finals, key=lambda r: r["val_accuracy"])
            vals = [r["val_accuracy"] for r in finals]
            ctx.save(
                variant,
                {
                    "top5_val_mean": float(np.mean(vals)),
                    "top5_val_std": float(np.std(vals)),
                    "best_val": float(best["val_accuracy"]),
                    "test_acc": float(best["test_accuracy"]),
                },
                {
                    "top": finals,
                    "best": best["description"],
                    "trained_architectures": len(search.state()["history"]),
                },
            )


RUNNERS = {"early-fusion-avmnist": EarlyFusionAvmnist, "mfas-avmnist": MfasAvmnist}
