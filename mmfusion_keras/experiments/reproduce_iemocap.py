"""IEMOCAP recipes of `mmfusion reproduce`: mbaf-iemocap, dual-memory-iemocap.

mbaf-iemocap (Priyasad et al. 2021, section 4.1, Table 1): 4-class
protocol (excitement merged into happiness); the audio encoder (SincNet +
CNN + MLP) is trained on 250 ms windows taken every 10 ms, the text encoder
(GloVe + BiRNN/CNN branches) on the transcripts, each on its own; then the
fused networks NF-I/II/III and MBAF-I/II/III are trained on (window,
transcript) pairs with the encoders frozen. The utterance-level decision
averages the window probabilities of the utterance ("250ms audio
utterance", section 4.1: we read it as windows of one utterance that vote
together; the paper gives no other rule). 8:1:1 split (`protocol =
"holdout"`, the paper's) or leave-one-session-out (`protocol = "loso"`).

dual-memory-iemocap (Priyasad et al. 2023, section 3.1, Table 1):
leave-one-session-out; Fig. 1 network (Wav2Vec2-style audio encoder, BERT
text encoder: all-MiniLM-L6-v2 offline, or the user's BERT preset folder)
with `DualMemoryFusion` ("memory") or concatenation ("naive"); SGD 0.01,
memory module 0.001.
"""

import os
import time

import numpy as np

from mmfusion_keras.datasets.iemocap import load_iemocap
from mmfusion_keras.datasets.splits import leave_one_group_out
from mmfusion_keras.datasets.splits import stratified_split

IEMOCAP_LAYOUT = (
    "<root>/Session1..Session5/ with dialog/EmoEvaluation/<dialog>.txt, "
    "dialog/transcriptions/<dialog>.txt and sentences/wav/<dialog>/<utterance>.wav "
    "(the IEMOCAP_full_release folder)"
)


def check_iemocap_root(root, sessions):
    """One-line errors for a wrong root or a partial copy; returns the
    sessions found."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"IEMOCAP data root not found: '{root}'. Expected {IEMOCAP_LAYOUT}."
        )
    found = [s for s in range(1, 6) if os.path.isdir(os.path.join(root, f"Session{s}"))]
    if not found:
        raise FileNotFoundError(
            f"No IEMOCAP session folder (Session1 ... Session5) in '{root}'. "
            f"Expected {IEMOCAP_LAYOUT}."
        )
    missing = [s for s in sessions if s not in found]
    if missing:
        raise ValueError(
            f"Partial IEMOCAP copy in '{root}': found sessions {found}, missing "
            f"{missing} (the recipe uses sessions {list(sessions)}). Add the "
            f"missing Session folders, or run on what you have with --set "
            f"sessions={found}."
        )
    for s in sessions:
        for sub in (
            ("dialog", "EmoEvaluation"),
            ("dialog", "transcriptions"),
            ("sentences", "wav"),
        ):
            path = os.path.join(root, f"Session{s}", *sub)
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"IEMOCAP folder missing: '{path}'. Expected {IEMOCAP_LAYOUT}."
                )
    return found


def _holdout_folds(dataset, params):
    split = stratified_split(
        dataset.labels, tuple(params["split"]), seed=params["split_seed"]
    )
    return [
        {
            "name": "holdout",
            "held_out": "8:1:1 stratified split",
            "indices": split,
        }
    ]


def validation_split(labels, fraction, seed):
    """(fit, validation) positions: stratified by class when every class has
    two examples or more, else a plain seeded split."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    try:
        fit, val = train_test_split(
            positions, test_size=fraction, stratify=labels, random_state=seed
        )
    except ValueError:
        fit, val = train_test_split(positions, test_size=fraction, random_state=seed)
    return np.sort(fit), np.sort(val)


def _loso_folds(dataset, params):
    folds = []
    for fold in leave_one_group_out(dataset.metadata["session"]):
        train = fold["train"]
        # Validation (early stopping): a stratified share of the training
        # sessions; the held-out session is never seen before the test.
        fit, val = validation_split(
            dataset.labels[train], params["validation_fraction"], params["split_seed"]
        )
        folds.append(
            {
                "name": f"session{int(fold['held_out'])}",
                "held_out": f"Session{int(fold['held_out'])}",
                "indices": {
                    "train": train[fit],
                    "validation": train[val],
                    "test": fold["test"],
                },
            }
        )
    return folds


def _add_groups(dataset, folds):
    speakers = dataset.metadata["speaker"]
    for fold in folds:
        fold["groups"] = {
            split: sorted(set(speakers[idx].tolist()))
            for split, idx in fold["indices"].items()
        }
    return folds


def _describe(dataset):
    counts = np.bincount(dataset.labels, minlength=len(dataset.class_names))
    return {
        "utterances": int(len(dataset)),
        "class_counts": dict(zip(dataset.class_names, counts.tolist())),
        "sessions": sorted(set(dataset.metadata["session"].tolist())),
        "speakers": sorted(set(dataset.metadata["speaker"].tolist())),
        "codes": {
            c: int(n)
            for c, n in zip(*np.unique(dataset.metadata["code"], return_counts=True))
        },
        "cropped_audio": int(dataset.info.get("num_cropped", 0)),
    }


def _metrics(labels, predicted, class_names):
    from mmfusion_keras.metrics import classification_metrics

    m = classification_metrics(labels, predicted, class_names)
    return (
        {
            "wa": float(m["weighted_accuracy"]),
            "ua": float(m["unweighted_accuracy"]),
            "f1": float(m["macro_f1"]),
        },
        {"confusion_matrix": m["confusion_matrix"], "class_names": list(class_names)},
    )


def _fit(model, train, validation, epochs, patience, verbose=0):
    import keras

    callbacks = []
    if validation is not None and patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                patience=int(patience), restore_best_weights=True
            )
        )
    history = model.fit(
        train,
        validation_data=validation,
        epochs=int(epochs),
        callbacks=callbacks,
        verbose=verbose,
    )
    return len(history.history.get("loss", []))


# --- windows of utterances ------------------------------------------------------


def utterance_windows(lengths, window, shift, max_windows=None):
    """(utterance index, start sample) of every window of every utterance.

    Windows of `window` samples every `shift` samples inside the real
    (unpadded) audio; an utterance shorter than one window gets one window
    at 0 (zero padded). `max_windows` keeps at most that many per utterance,
    evenly spaced.
    """
    rows, starts = [], []
    for i, length in enumerate(lengths):
        s = np.arange(0, max(int(length) - window, 0) + 1, shift, dtype="int64")
        if max_windows is not None and len(s) > max_windows:
            s = s[np.linspace(0, len(s) - 1, int(max_windows)).round().astype(int)]
        rows.append(np.full(len(s), i, "int64"))
        starts.append(s)
    return np.concatenate(rows), np.concatenate(starts)


def _window_batches(
    waves, tokens, labels, utt, start, window, batch_size, seed, shuffle, use
):
    import keras

    class WindowBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            order = np.arange(len(utt))
            if shuffle:
                order = np.random.default_rng(seed).permutation(order)
            self.order = order
            self.offsets = np.arange(window)

        def __len__(self):
            return -(-len(self.order) // batch_size)

        def on_epoch_end(self):
            if shuffle:
                np.random.default_rng(seed + 1).shuffle(self.order)

        def __getitem__(self, index):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            u = utt[rows]
            x = {}
            if "audio" in use:
                x["audio"] = waves[u[:, None], start[rows][:, None] + self.offsets]
            if "text" in use:
                x["text"] = tokens[u]
            if use == ("audio",):
                x = x["audio"]
            elif use == ("text",):
                x = x["text"]
            return x, labels[u]

    return WindowBatches()


class MbafIemocap:
    """mbaf-iemocap: pre-trained AE and TE, then NF / MBAF fusion."""

    def __init__(self, recipe, params):
        self.recipe, self.params = recipe, params

    def load(self, root, log):
        p = self.params
        check_iemocap_root(root, p["sessions"])
        window = int(round(p["window_ms"] * p["sample_rate"] / 1000))
        max_seconds = max(p["max_seconds"], p["window_ms"] / 1000)
        dataset = load_iemocap(
            root,
            sessions=tuple(p["sessions"]),
            sample_rate=p["sample_rate"],
            max_seconds=max_seconds,
        )
        if dataset.inputs["audio"].shape[1] < window:
            raise ValueError("audio shorter than one window")  # cannot happen
        log(f"  {_describe(dataset)['class_counts']} utterances per class")
        return dataset

    def describe(self, dataset):
        return _describe(dataset)

    def folds(self, dataset):
        if self.params["protocol"] == "holdout":
            folds = _holdout_folds(dataset, self.params)
        elif self.params["protocol"] == "loso":
            folds = _loso_folds(dataset, self.params)
        else:
            raise ValueError(
                "--set protocol: expected 'holdout' (8:1:1, the paper's) or "
                f"'loso'. Received: {self.params['protocol']!r}"
            )
        return _add_groups(dataset, folds)

    def _text(self, dataset, train_idx):
        from mmfusion_keras.datasets.text import fit_tokenizer

        p = self.params
        texts = dataset.inputs["text"]
        tokenizer = fit_tokenizer([str(t) for t in texts[train_idx]])
        tokens = tokenizer.encode(
            [str(t) for t in texts], sequence_length=p["sequence_length"]
        ).astype("int32")
        kwargs = dict(p["text_encoder"])
        if p["text_embeddings"] == "glove-6b-50d":
            from mmfusion_keras.datasets.text import load_glove

            matrix, _ = load_glove(tokenizer)
            kwargs.update(embeddings=matrix, embedding_dim=matrix.shape[1])
        elif p["text_embeddings"] != "random":
            raise ValueError(
                "--set text_embeddings: expected 'glove-6b-50d' or 'random'. "
                f"Received: {p['text_embeddings']!r}"
            )
        kwargs.update(
            vocabulary_size=len(tokenizer.vocabulary),
            sequence_length=p["sequence_length"],
        )
        return tokens, kwargs

    def run_fold(self, dataset, fold, ctx, variants):
        import keras

        from mmfusion_keras.models.mbaf_networks import build_iemocap_audio_encoder
        from mmfusion_keras.models.mbaf_networks import build_iemocap_network
        from mmfusion_keras.models.mbaf_networks import build_iemocap_text_encoder

        p, log, seed = self.params, ctx.log, ctx.seed
        idx = fold["indices"]
        window = int(round(p["window_ms"] * p["sample_rate"] / 1000))
        shift = int(round(p["shift_ms"] * p["sample_rate"] / 1000))
        waves = dataset.inputs["audio"]
        labels = dataset.labels
        lengths = np.minimum(dataset.metadata["audio_length"], waves.shape[1])
        tokens, text_kwargs = self._text(dataset, idx["train"])
        audio_kwargs = {
            **p["audio_encoder"],
            "audio_length": window,
            "sample_rate": p["sample_rate"],
        }
        num_classes = len(dataset.class_names)

        def windows(split):
            u, s = utterance_windows(
                lengths[idx[split]], window, shift, p["max_segments_per_utterance"]
            )
            return idx[split][u], s

        win = {split: windows(split) for split in idx}
        log(f"  windows: { {k: len(v[0]) for k, v in win.items()} }")

        def batches(split, use, shuffle):
            u, s = win[split]
            return _window_batches(
                waves, tokens, labels, u, s, window, p["batch_size"], seed, shuffle, use
            )

        def adam():
            return keras.optimizers.Adam(p["learning_rate"])

        # 1. Encoders, each trained on its own with a softmax on top.
        encoders = {}
        for kind in ("audio", "text"):
            path = os.path.join(ctx.workdir, f"{kind}_encoder.weights.h5")
            build = (
                build_iemocap_audio_encoder
                if kind == "audio"
                else build_iemocap_text_encoder
            )
            kwargs = audio_kwargs if kind == "audio" else text_kwargs
            encoder = build(**kwargs)
            inp = keras.Input(encoder.input.shape[1:], dtype=encoder.input.dtype)
            out = keras.layers.Dense(num_classes, activation="softmax")(encoder(inp))
            pretrain = keras.Model(inp, out)
            if os.path.isfile(path):
                encoder.load_weights(path)
                log(f"  {kind} encoder: loaded from {path}")
            else:
                pretrain.compile(
                    adam(),
                    "sparse_categorical_crossentropy",
                    jit_compile=p["jit_compile"],
                )
                if kind == "audio":
                    train = batches("train", ("audio",), True)
                    val = batches("validation", ("audio",), False)
                else:
                    from mmfusion_keras.runs import ShuffledBatches

                    train = ShuffledBatches(
                        tokens[idx["train"]],
                        labels[idx["train"]],
                        p["batch_size"],
                        seed,
                    )
                    val = (tokens[idx["validation"]], labels[idx["validation"]])
                t0 = time.time()
                epochs = _fit(pretrain, train, val, p["encoder_epochs"], p["patience"])
                tmp = path + ".tmp.weights.h5"
                encoder.save_weights(tmp)
                os.replace(tmp, path)
                log(f"  {kind} encoder: {epochs} epoch(s), {time.time() - t0:.1f} s")
            encoders[kind] = (kwargs, encoder.get_weights())

        # 2. Fused networks on (window, transcript) pairs.
        test_u, _ = win["test"]
        for variant in variants:
            if ctx.done(variant):
                log(f"  {variant}: done (skipped)")
                continue
            keras.utils.set_random_seed(seed)
            ae = build_iemocap_audio_encoder(**encoders["audio"][0])
            ae.set_weights(encoders["audio"][1])
            te = build_iemocap_text_encoder(**encoders["text"][0])
            te.set_weights(encoders["text"][1])
            ae.trainable = te.trainable = not p["freeze_encoders"]
            model = build_iemocap_network(
                variant,
                audio_encoder=ae,
                text_encoder=te,
                fusion_kwargs=dict(p["mbaf"]) if variant.startswith("MBAF") else None,
                num_classes=num_classes,
            )
            model.compile(
                adam(), "sparse_categorical_crossentropy", jit_compile=p["jit_compile"]
            )
            epochs = _fit(
                model,
                batches("train", ("audio", "text"), True),
                batches("validation", ("audio", "text"), False),
                p["fusion_epochs"],
                p["patience"],
            )
            probs = model.predict(batches("test", ("audio", "text"), False), verbose=0)
            # Utterance-level decision: mean window probability.
            utterances = idx["test"]
            where = {u: k for k, u in enumerate(utterances)}
            summed = np.zeros((len(utterances), num_classes))
            counts = np.zeros(len(utterances))
            for row, u in enumerate(test_u):
                summed[where[u]] += probs[row]
                counts[where[u]] += 1
            predicted = (summed / counts[:, None]).argmax(-1)
            metrics, details = _metrics(
                labels[utterances], predicted, dataset.class_names
            )
            details.update(epochs=epochs, parameters=int(model.count_params()))
            ctx.save(variant, metrics, details)


# --- dual memory ------------------------------------------------------------------


class DualMemoryIemocap:
    """dual-memory-iemocap: Fig. 1 network, LOSO, SGD 0.01 / memory 0.001."""

    def __init__(self, recipe, params):
        self.recipe, self.params = recipe, params

    def load(self, root, log):
        p = self.params
        check_iemocap_root(root, p["sessions"])
        if len(p["sessions"]) < 2:
            raise ValueError(
                "Leave-one-session-out needs at least two sessions. Received: "
                f"sessions={p['sessions']}"
            )
        dataset = load_iemocap(
            root,
            sessions=tuple(p["sessions"]),
            sample_rate=p["sample_rate"],
            max_seconds=p["audio_seconds"],
        )
        log(f"  {_describe(dataset)['class_counts']} utterances per class")
        return dataset

    def describe(self, dataset):
        return _describe(dataset)

    def folds(self, dataset):
        return _add_groups(dataset, _loso_folds(dataset, self.params))

    def _text(self, dataset, train_idx):
        """Token inputs for every utterance and the backbone factory."""
        p = self.params
        texts = [str(t) for t in dataset.inputs["text"]]
        length = p["sequence_length"]
        choice = p["text_encoder"]
        if choice == "small-bert":
            from mmfusion_keras.datasets.text import fit_tokenizer
            from mmfusion_keras.models.dual_memory_network import (
                build_small_bert_backbone,
            )

            tokenizer = fit_tokenizer([texts[i] for i in train_idx])
            ids = tokenizer.encode(texts, sequence_length=length).astype("int32")
            features = {
                "token_ids": ids,
                "segment_ids": np.zeros_like(ids),
                "padding_mask": (ids != 0).astype("int32"),
            }
            size = len(tokenizer.vocabulary)

            def backbone():
                return build_small_bert_backbone(
                    vocabulary_size=size, sequence_length=length, **p["small_bert"]
                )

            return features, backbone
        if choice == "minilm":
            from mmfusion_keras.datasets.text import load_minilm

            encoder = load_minilm(sequence_length=length)
            features = encoder.preprocess(texts)

            def backbone():
                return load_minilm(sequence_length=length).backbone

            return features, backbone
        # A folder holding a KerasHub / Hugging Face BERT preset.
        if not os.path.isdir(choice):
            raise FileNotFoundError(
                f"--set text_encoder: '{choice}' is not 'minilm', 'small-bert' or "
                "a folder holding BERT weights (config.json, model.safetensors, "
                "vocab.txt)."
            )
        import keras_hub

        tokenizer = keras_hub.models.BertTokenizer.from_preset(choice)
        pre = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=length
        )
        from keras import ops

        features = {k: ops.convert_to_numpy(v) for k, v in pre(texts).items()}

        def backbone():
            return keras_hub.models.BertBackbone.from_preset(choice)

        return features, backbone

    def run_fold(self, dataset, fold, ctx, variants):
        import keras

        from mmfusion_keras.models.dual_memory_network import build_dual_memory_network
        from mmfusion_keras.models.dual_memory_network import (
            build_wav2vec2_style_encoder,
        )
        from mmfusion_keras.optimizers import memory_module_optimizer
        from mmfusion_keras.runs import ShuffledBatches

        p, idx = self.params, fold["indices"]
        features, backbone = self._text(dataset, idx["train"])
        x = {"audio": dataset.inputs["audio"], **features}
        labels = dataset.labels
        samples = x["audio"].shape[1]
        for variant in variants:
            if ctx.done(variant):
                ctx.log(f"  {variant}: done (skipped)")
                continue
            if variant not in ("memory", "naive"):
                raise ValueError(
                    f"--set variants: expected 'memory' and/or 'naive'. "
                    f"Received: {variant!r}"
                )
            keras.utils.set_random_seed(ctx.seed)
            text_backbone = backbone()
            audio = build_wav2vec2_style_encoder(
                samples, hidden_dim=text_backbone.hidden_dim, **p["audio_encoder"]
            )
            model = build_dual_memory_network(
                num_classes=len(dataset.class_names),
                fusion="dual_memory" if variant == "memory" else "concat",
                text_backbone=text_backbone,
                audio_backbone=audio,
                audio_samples=samples,
                sequence_length=p["sequence_length"],
                fusion_kwargs=dict(p["fusion"]),
                head_units=tuple(p["head_units"]),
            )
            if variant == "memory":
                optimizer = memory_module_optimizer(
                    model, p["learning_rate"], p["memory_learning_rate"]
                )
            else:
                optimizer = keras.optimizers.SGD(p["learning_rate"])
            model.compile(
                optimizer,
                "sparse_categorical_crossentropy",
                jit_compile=p["jit_compile"],
            )

            def take(split):
                return {k: v[idx[split]] for k, v in x.items()}

            epochs = _fit(
                model,
                ShuffledBatches(
                    take("train"), labels[idx["train"]], p["batch_size"], ctx.seed
                ),
                (take("validation"), labels[idx["validation"]]),
                p["epochs"],
                p["patience"],
            )
            probs = model.predict(take("test"), batch_size=p["batch_size"], verbose=0)
            metrics, details = _metrics(
                labels[idx["test"]], probs.argmax(-1), dataset.class_names
            )
            details.update(epochs=epochs, parameters=int(model.count_params()))
            ctx.save(variant, metrics, details)


RUNNERS = {"mbaf-iemocap": MbafIemocap, "dual-memory-iemocap": DualMemoryIemocap}
