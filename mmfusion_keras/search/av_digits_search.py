"""MFAS on AV-Digits: unimodal LeNets, cached candidate features, baselines.

The paper's AV-MNIST set-up (section 4) on the bundled AV-Digits data:
`f` is a LeNet-style network with five convolutional layers on the log-mel
spectrogram (its five ReLU conv outputs are `x_1..x_5`, M = 5), `g` one
with three convolutional layers on the 8x8 digit image (`y_1..y_3`,
N = 3). Both are trained first, saved, and then frozen: their candidate
features are computed once per split and cached.
"""

import os
import time

import keras
import numpy as np

from mmfusion_keras.search.fusion_network import build_feature_extractor
from mmfusion_keras.search.fusion_network import x_name
from mmfusion_keras.search.fusion_network import y_name

SPLITS = ("train", "validation", "test")
AUDIO_FILTERS = (8, 16, 16, 32, 32)
IMAGE_FILTERS = (16, 32, 64)


def build_lenet(input_shape, filters, num_classes, name, input_name):
    """A LeNet-style CNN: `len(filters)` ReLU 3x3 convs, 2x2 max pooling
    between them, global average pooling and a softmax classifier.

    The conv layers are named `"{name}_conv{i}"` (1-based): the candidate
    feature layers of MFAS.

    Args:
        input_shape: `(height, width, channels)`.
        filters: channels of every conv layer.
        num_classes: classifier outputs.
        name: model name and layer-name prefix.
        input_name: name of the input.

    Returns:
        A functional `keras.Model` with softmax output.

    Example:

    >>> net = build_lenet((8, 8, 1), (4, 8, 8), 10, "image", "image")
    >>> [lyr.name for lyr in net.layers if "conv" in lyr.name]
    ['image_conv1', 'image_conv2', 'image_conv3']
    """
    inputs = keras.Input(input_shape, name=input_name)
    x = inputs
    for i, width in enumerate(filters, start=1):
        if i > 1:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i - 1}")(x)
        x = keras.layers.Conv2D(
            width, 3, padding="same", activation="relu", name=f"{name}_conv{i}"
        )(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{name}_out")(
        x
    )
    return keras.Model(inputs, outputs, name=name)


def conv_layer_names(model):
    """Names of the candidate (conv) layers of a `build_lenet` network."""
    return [lyr.name for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]


def load_splits(audio_snr_db=None, image_snr_db=None, seed=0, max_examples=None):
    """AV-Digits splits as `{split: ({"audio", "image"}, labels)}`.

    Audio is the log-mel spectrogram `(101, 40, 1)`, standardised with the
    mean and standard deviation of the training split; images are
    `(8, 8, 1)`. Noise is added per split by `load_av_digits`.
    """
    from mmfusion_keras.datasets.av_digits import load_av_digits

    out = {}
    for split in SPLITS:
        ds = load_av_digits(
            split,
            audio_snr_db=audio_snr_db,
            image_snr_db=image_snr_db,
            features="mel",
            seed=seed,
            max_examples=max_examples,
        )
        out[split] = (
            {"audio": ds.inputs["audio"][..., None], "image": ds.inputs["image"]},
            ds.labels.astype("int32"),
        )
    mean = float(out["train"][0]["audio"].mean())
    std = float(out["train"][0]["audio"].std()) + 1e-6
    for split in SPLITS:
        out[split][0]["audio"] = ((out[split][0]["audio"] - mean) / std).astype(
            "float32"
        )
    return out


def train_classifier(model, train, validation, epochs, seed, batch_size=64, lr=1e-3):
    """Fits a softmax model (Adam, best validation-accuracy epoch kept)."""
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=max(3, epochs // 4), restore_best_weights=True
    )
    model.fit(
        train[0],
        train[1],
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[stop],
        verbose=0,
    )
    return model


def accuracy(model, inputs, labels):
    """Accuracy of a softmax model (or of a probability array)."""
    p = inputs if model is None else model.predict(inputs, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(p, -1) == labels))


def candidate_features(f, g, f_layers, g_layers, split):
    """Pooled candidate features of one split: `{"x1": ..., "yN": ...}`."""
    fx = build_feature_extractor(f, f_layers)
    gy = build_feature_extractor(g, g_layers)
    xs = fx.predict(split[0]["audio"], batch_size=256, verbose=0)
    ys = gy.predict(split[0]["image"], batch_size=256, verbose=0)
    xs = xs if isinstance(xs, (list, tuple)) else [xs]
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    out = {x_name(i + 1): np.asarray(v, "float32") for i, v in enumerate(xs)}
    out.update({y_name(i + 1): np.asarray(v, "float32") for i, v in enumerate(ys)})
    return out


def prepare(
    directory,
    audio_snr_db=None,
    image_snr_db=None,
    seed=0,
    unimodal_epochs=30,
    max_examples=None,
    audio_filters=AUDIO_FILTERS,
    image_filters=IMAGE_FILTERS,
    verbose=False,
):
    """Data, trained unimodal nets and cached candidate features.

    The unimodal networks are trained once and saved as
    `directory/audio_lenet.keras` and `directory/image_lenet.keras`; the
    candidate features of every split are cached in
    `directory/features_<split>.npz`. Later calls load both. The returned
    features are standardised per dimension with the training split's mean
    and variance (`feature_stats`).

    Returns:
        A dict with `splits` (raw inputs), `f`, `g`, `f_layers`, `g_layers`,
        `features` (`{split: (feature dict, labels)}`) and `seconds` (time
        spent training the unimodal nets and computing the features).
    """
    os.makedirs(directory, exist_ok=True)
    splits = load_splits(audio_snr_db, image_snr_db, seed, max_examples)
    seconds = {}
    nets = {}
    specs = (
        ("audio", "audio_lenet", (101, 40, 1), audio_filters),
        ("image", "image_lenet", (8, 8, 1), image_filters),
    )
    for i, (modality, name, shape, filters) in enumerate(specs):
        path = os.path.join(directory, f"{name}.keras")
        if os.path.exists(path):
            nets[modality] = keras.saving.load_model(path, compile=False)
            continue
        start = time.perf_counter()
        keras.utils.set_random_seed(seed + i)
        net = build_lenet(shape, filters, 10, name, modality)
        train = ({modality: splits["train"][0][modality]}, splits["train"][1])
        val = ({modality: splits["validation"][0][modality]}, splits["validation"][1])
        train_classifier(net, train, val, unimodal_epochs, seed + i)
        net.save(path)
        nets[modality] = net
        seconds[f"train_{name}"] = time.perf_counter() - start
        if verbose:
            print(f"trained {name} in {seconds[f'train_{name}']:.1f} s", flush=True)
    f, g = nets["audio"], nets["image"]
    f.trainable = False
    g.trainable = False
    f_layers, g_layers = conv_layer_names(f), conv_layer_names(g)
    features = {}
    start = time.perf_counter()
    for split in SPLITS:
        path = os.path.join(directory, f"features_{split}.npz")
        if os.path.exists(path):
            with np.load(path) as data:
                feats = {k: np.array(data[k]) for k in data.files}
        else:
            feats = candidate_features(f, g, f_layers, g_layers, splits[split])
            np.savez(path, **feats)
        features[split] = (feats, splits[split][1])
    seconds["features"] = time.perf_counter() - start
    # Standardise every cached feature with the training split's statistics
    # (the pooled conv outputs of different layers differ in scale by
    # orders of magnitude; a sampled head trained for 2 epochs needs them
    # on one scale). `feature_stats` re-applies this inside end-to-end
    # networks (`build_fusion_network(..., feature_stats=...)`).
    feature_stats = {}
    for key, values in features["train"][0].items():
        mean = values.mean(axis=0)
        variance = values.var(axis=0) + 1e-6
        feature_stats[key] = (mean, variance)
    for split in SPLITS:
        feats, labels = features[split]
        feats = {
            k: ((v - feature_stats[k][0]) / np.sqrt(feature_stats[k][1])).astype(
                "float32"
            )
            for k, v in feats.items()
        }
        features[split] = (feats, labels)
    return {
        "directory": directory,
        "splits": splits,
        "f": f,
        "g": g,
        "f_layers": f_layers,
        "g_layers": g_layers,
        "features": features,
        "feature_stats": feature_stats,
        "seconds": seconds,
    }


def _head_accuracy(head, features, labels):
    names = list(head.input)
    p = head.predict({k: features[k] for k in names}, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(p, -1) == labels))


def search_and_train(
    data,
    directory,
    method="mfas",
    budget=30,
    seed=0,
    num_samples=5,
    max_layers=4,
    activations=("relu", "sigmoid"),
    epochs=2,
    units=16,
    learning_rate=1e-2,
    t_max=10.0,
    t_min=0.2,
    top_k=5,
    final_units=64,
    final_epochs=40,
    multitask_epochs=0,
    batch_size=64,
    final_patience=8,
    run_eagerly=False,
    verbose=False,
    search_iterations=None,
    level_one="sampled",
    temperature_schedule="exponential",
    one_compiled_head=True,
):
    """Runs (or resumes) a search, then trains the top `top_k` to completion.

    `search_iterations`, `level_one` and `temperature_schedule` go to
    `FusionArchitectureSearch` (for MFAS; random search ignores them), as
    does `one_compiled_head` (for both: one compiled fusion model reused
    by every sampled architecture, `PaddedFusionTrainer`);
    `mmfusion search --paper-protocol` sets the paper's
    (`fusion_architecture_search.PAPER_PROTOCOL`).

    Args:
        data: the dict returned by `prepare`.
        directory: output folder (the search state goes to
            `directory/search_<method>`).
        method: `"mfas"` or `"random"`.
        budget: architectures sampled by the search.
        seed: seed of search and final training.
        num_samples: `K`.
        max_layers: `L`.
        activations: the `P` activations.
        epochs: `E_train` per sampled architecture.
        units: fusion width during the search.
        learning_rate: Adam learning rate of the sampled networks.
        t_max, t_min: temperature range.
        top_k: how many of the best found are trained to completion.
        final_units: fusion width of the final training.
        final_epochs: maximum epochs of the final training.
        multitask_epochs: if > 0, the best architecture is then fine-tuned
            end to end with the multitask loss for this many epochs.
        batch_size: batch size of the search and the final training.
        final_patience: early-stopping patience of the final training.
        run_eagerly: `compile` argument of the fusion heads (True is
            faster for many small models on a busy CPU with PyTorch).
        verbose: print progress.

    Returns:
        A JSON-serialisable dict of results.
    """
    from mmfusion_keras.search.final_training import finetune_multitask
    from mmfusion_keras.search.final_training import train_final
    from mmfusion_keras.search.fusion_architecture_search import (
        FusionArchitectureSearch,
    )
    from mmfusion_keras.search.search_space import SearchSpace

    space = SearchSpace(
        len(data["f_layers"]), len(data["g_layers"]), activations, max_layers
    )
    features = data["features"]
    search = FusionArchitectureSearch(
        space,
        features["train"],
        features["validation"],
        10,
        os.path.join(directory, f"search_{method}"),
        method=method,
        budget=budget,
        num_samples=num_samples,
        epochs=epochs,
        units=units,
        learning_rate=learning_rate,
        t_max=t_max,
        t_min=t_min,
        batch_size=batch_size,
        run_eagerly=run_eagerly,
        seed=seed,
        search_iterations=search_iterations if method == "mfas" else None,
        level_one=level_one,
        temperature_schedule=temperature_schedule,
        one_compiled_head=one_compiled_head,
    )
    start = time.perf_counter()
    top = search.run(verbose=verbose)
    search_seconds = time.perf_counter() - start
    state = search.state()
    per_arch = [e["seconds"] for e in state["history"]]
    finals = []
    for rank, (description, search_acc) in enumerate(top[:top_k]):
        head, val_acc, seconds = train_final(
            description,
            space,
            features["train"],
            features["validation"],
            10,
            units=final_units,
            epochs=final_epochs,
            batch_size=batch_size,
            patience=final_patience,
            seed=seed,
            run_eagerly=run_eagerly,
        )
        test_acc = _head_accuracy(head, *features["test"])
        finals.append(
            {
                "description": [list(t) for t in description],
                "search_val_accuracy": search_acc,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "seconds": seconds,
            }
        )
        if verbose:
            print(
                f"[{method}] final {rank + 1}: {list(description)} val {val_acc:.4f} "
                f"test {test_acc:.4f}",
                flush=True,
            )
    best = max(finals, key=lambda r: r["val_accuracy"])
    result = {
        "method": method,
        "budget": budget,
        "seed": seed,
        "num_samples": num_samples,
        "max_layers": max_layers,
        "epochs_per_architecture": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "final_units": final_units,
        "final_epochs": final_epochs,
        "search_seconds": search_seconds,
        "search_seconds_per_architecture": search_seconds / max(1, len(per_arch)),
        "one_compiled_head": one_compiled_head,
        "backend": keras.config.backend(),
        "seconds_per_architecture_mean": float(np.mean(per_arch)),
        "seconds_per_architecture_median": float(np.median(per_arch)),
        "num_trained": len(state["history"]),
        "top": finals,
        "top_search_val_mean": float(
            np.mean([r["search_val_accuracy"] for r in finals])
        ),
        "top_search_val_std": float(np.std([r["search_val_accuracy"] for r in finals])),
        "top_val_mean": float(np.mean([r["val_accuracy"] for r in finals])),
        "top_val_std": float(np.std([r["val_accuracy"] for r in finals])),
        "best": best,
        "temperatures": [s.get("temperature") for s in state["steps"]],
    }
    if multitask_epochs > 0:
        f = keras.saving.load_model(
            os.path.join(data["directory"], "audio_lenet.keras")
        )
        g = keras.saving.load_model(
            os.path.join(data["directory"], "image_lenet.keras")
        )
        description = space.validate(best["description"])
        head, _, _ = train_final(
            description,
            space,
            features["train"],
            features["validation"],
            10,
            units=final_units,
            epochs=final_epochs,
            batch_size=batch_size,
            patience=final_patience,
            seed=seed,
            run_eagerly=run_eagerly,
        )
        splits = data["splits"]
        model, val_acc, seconds = finetune_multitask(
            description,
            space,
            head,
            f,
            g,
            data["f_layers"],
            data["g_layers"],
            splits["train"],
            splits["validation"],
            10,
            epochs=multitask_epochs,
            batch_size=batch_size,
            seed=seed,
            feature_stats=data["feature_stats"],
        )
        p = model.predict(splits["test"][0], batch_size=256, verbose=0)["fusion"]
        result["multitask"] = {
            "val_accuracy": val_acc,
            "test_accuracy": float(np.mean(np.argmax(p, -1) == splits["test"][1])),
            "seconds": seconds,
            "epochs": multitask_epochs,
        }
    return result


def baselines(data, seed=0, units=64, epochs=40, batch_size=64, patience=8):
    """Table 2 baselines: unimodal nets, late fusion, last-feature concat.

    - unimodal: the trained `f` (spectrogram) and `g` (image) alone;
    - two-stream late fusion: the mean of the two unimodal softmax outputs
      (no training);
    - concatenation of the last features: one ReLU fusion layer on
      `[x_M; y_N]` and a softmax (the description `[(M, N, 1)]`), trained
      like the final architectures.
    """
    from mmfusion_keras.search.final_training import train_final
    from mmfusion_keras.search.search_space import SearchSpace

    splits = data["splits"]
    out = {}
    for split in ("validation", "test"):
        (inputs, labels) = splits[split]
        pf = data["f"].predict(inputs["audio"], batch_size=256, verbose=0)
        pg = data["g"].predict(inputs["image"], batch_size=256, verbose=0)
        out[split] = {
            "audio_lenet5": accuracy(None, pf, labels),
            "image_lenet3": accuracy(None, pg, labels),
            "late_fusion_mean": accuracy(None, (pf + pg) / 2, labels),
        }
    space = SearchSpace(
        len(data["f_layers"]), len(data["g_layers"]), ("relu", "sigmoid")
    )
    last = [(len(data["f_layers"]), len(data["g_layers"]), 1)]
    head, val_acc, _ = train_final(
        last,
        space,
        data["features"]["train"],
        data["features"]["validation"],
        10,
        units=units,
        epochs=epochs,
        batch_size=batch_size,
        patience=patience,
        seed=seed,
    )
    out["validation"]["concat_last_features"] = val_acc
    out["test"]["concat_last_features"] = _head_accuracy(
        head, *data["features"]["test"]
    )
    return out


def measure_speedup(
    data,
    descriptions,
    space,
    epochs=1,
    units=16,
    seed=0,
    batch_size=64,
    run_eagerly=False,
    learning_rate=1e-3,
):
    """Per-architecture wall time of the three ways to train a sampled head.

    For every description (same epochs, batch size, width), side by side
    in one process:

    - `through_extractors_seconds`: a new model from the raw inputs
      through the frozen `f` and `g` (`build_fusion_network`), compiled
      and fitted, then a validation pass: what a search without a feature
      cache pays per architecture;
    - `cached_per_model_seconds`: a new head on the cached features
      (`train_fusion_head` without a trainer: model construction and, when
      compiled, a fresh trace/compile per architecture);
    - `cached_seconds`: the search's default, one compiled fixed-shape
      head for all architectures (`PaddedFusionTrainer`).

    Each way runs once untimed first (the one-off warm-up of the process
    and, for `cached_seconds`, the single compile counts for none of them).

    Returns:
        A dict with the rows, the means of each way, and the ratios
        `speedup` (through the extractors / one compiled head) and
        `speedup_per_model` (through the extractors / a new cached head).
    """
    from mmfusion_keras.search.fusion_architecture_search import feature_widths
    from mmfusion_keras.search.fusion_architecture_search import train_fusion_head
    from mmfusion_keras.search.fusion_network import build_fusion_network
    from mmfusion_keras.search.padded_fusion_head import PaddedFusionTrainer

    splits = data["splits"]
    train, validation = data["features"]["train"], data["features"]["validation"]
    common = {"units": units, "epochs": epochs, "batch_size": batch_size}
    trainer = PaddedFusionTrainer(
        space,
        *feature_widths(train[0], space),
        10,
        units=units,
        batch_size=batch_size,
        learning_rate=learning_rate,
        run_eagerly=run_eagerly,
    )

    def through(description):
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        data["f"].trainable = False
        data["g"].trainable = False
        model = build_fusion_network(
            description,
            data["f"],
            data["g"],
            data["f_layers"],
            data["g_layers"],
            10,
            units=units,
            activations=space.activations,
            feature_stats=data["feature_stats"],
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            run_eagerly=run_eagerly,
        )
        model.fit(
            splits["train"][0],
            splits["train"][1],
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
        )
        model.predict(splits["validation"][0], batch_size=1024, verbose=0)
        return time.perf_counter() - start

    def per_model(description):
        return train_fusion_head(
            description,
            space,
            train,
            validation,
            10,
            seed=seed,
            learning_rate=learning_rate,
            run_eagerly=run_eagerly,
            **common,
        )[2]

    def one_head(description):
        return trainer.train(description, train, validation, epochs=epochs, seed=seed)[
            1
        ]

    # One untimed run of each way first.
    for way in (one_head, per_model, through):
        way(descriptions[0])
    rows = []
    for description in descriptions:
        rows.append(
            {
                "description": [list(t) for t in description],
                "cached_seconds": one_head(description),
                "cached_per_model_seconds": per_model(description),
                "through_extractors_seconds": through(description),
            }
        )
    means = {
        key: float(np.mean([r[key] for r in rows]))
        for key in (
            "cached_seconds",
            "cached_per_model_seconds",
            "through_extractors_seconds",
        )
    }
    return {
        "backend": keras.config.backend(),
        "run_eagerly": run_eagerly,
        "epochs": epochs,
        "batch_size": batch_size,
        "rows": rows,
        "cached_mean": means["cached_seconds"],
        "cached_per_model_mean": means["cached_per_model_seconds"],
        "through_mean": means["through_extractors_seconds"],
        "speedup": means["through_extractors_seconds"] / means["cached_seconds"],
        "speedup_per_model": means["through_extractors_seconds"]
        / means["cached_per_model_seconds"],
    }
