"""CMU-MOSEI recipes of `mmfusion reproduce`: delta-mosei and mult-mosei.

Panchal, "Hierarchical Delta-Attention Method for Multimodal Fusion",
sections 4.4-6 and Tables 1-2: six emotions of CMU-MOSEI from GloVe text,
FACET/OpenFace vision and COVAREP audio sequences, aligned to the words or
unaligned; an 80:10:10 split; the hierarchical model trained module by
module with Table 1's Adam settings (`fit_hierarchical_stagewise`) and,
for comparison, end to end; MulT (Tsai et al. 2019) as the baseline.
Metrics: Acc_6 and F1 over the dominant emotion, and per emotion the
binary (present / absent) weighted accuracy ("Acc_2") and F1
(`metrics.emotion_metrics`); parameter counts.

Readings: the split is drawn by video (no video's segments in two
splits), since segments of one video share speaker and topic; the paper
says only "80:10:10". The head is six sigmoids (`head = "multilabel"`)
so that one model gives both the 6-way and the per-emotion numbers
(`--set head=multiclass` for the paper's softmax of Eq. 17, which has no
per-emotion numbers).
"""

import os

import numpy as np

from mmfusion_keras.datasets.cmu_mosei import MOSEI_EMOTIONS
from mmfusion_keras.datasets.cmu_mosei import MOSEI_FILES
from mmfusion_keras.datasets.cmu_mosei import load_cmu_mosei

MODALITIES = ("text", "vision", "audio")
MOSEI_LAYOUT = (
    "<root>/"
    + ", ".join(MOSEI_FILES[k] for k in ("text", "audio", "vision", "labels"))
    + " (CMU-MultimodalSDK computational sequences; "
    + MOSEI_FILES["words"]
    + " optional)"
)


def check_mosei_root(root, vision_file):
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"CMU-MOSEI data root not found: '{root}'. Expected {MOSEI_LAYOUT}."
        )
    files = {
        "text": MOSEI_FILES["text"],
        "audio": MOSEI_FILES["audio"],
        "vision": vision_file,
        "labels": MOSEI_FILES["labels"],
    }
    missing = [f for f in files.values() if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(
            f"CMU-MOSEI files missing in '{root}': {missing}. Expected {MOSEI_LAYOUT}."
        )
    return {k: os.path.join(root, f) for k, f in files.items()}


def video_split(videos, fractions, seed):
    """80:10:10 of the videos (seeded), mapped back to segment indices."""
    names = np.array(sorted(set(videos.tolist())))
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(names)
    n_train = int(round(fractions[0] * n))
    n_val = max(1, int(round(fractions[1] * n)))
    groups = {
        "train": names[order[:n_train]],
        "validation": names[order[n_train : n_train + n_val]],
        "test": names[order[n_train + n_val :]],
    }
    if not len(groups["test"]) or not len(groups["train"]):
        raise ValueError(
            f"CMU-MOSEI: {n} videos are too few for a {fractions} split by video."
        )
    return {k: np.flatnonzero(np.isin(videos, v)) for k, v in groups.items()}


def _flatten(m):
    out = {"acc_6": m["acc_6"], "f1_6": m["f1_6"]}
    for name, row in (m.get("per_class") or {}).items():
        out[f"{name}_acc_2"] = row["wa"]
        out[f"{name}_f1"] = row["f1"]
    return {k: (None if v is None else float(v)) for k, v in out.items()}


class _MoseiRunner:
    def __init__(self, recipe, params):
        self.recipe, self.params = recipe, params

    def load(self, root, log):
        p = self.params
        paths = check_mosei_root(root, p["vision_file"])
        data = {}
        for aligned in sorted({self._aligned(v) for v in p["variants"]}):
            ds = load_cmu_mosei(
                modalities={m: paths[m] for m in MODALITIES},
                labels=paths["labels"],
                aligned=aligned,
                align_to="text",
                max_length=p["max_length"],
                target="emotions",
            )
            skipped = ds.info.get("skipped_videos", [])
            log(
                f"  {'aligned' if aligned else 'unaligned'}: {len(ds)} segments of "
                f"{len(set(ds.metadata['video'].tolist()))} videos"
                + (f"; {len(skipped)} videos missing from some file" if skipped else "")
            )
            data[aligned] = ds
        return data

    def _aligned(self, variant):
        if variant.endswith("unaligned"):
            return False
        if variant.endswith("aligned"):
            return True
        raise ValueError(
            f"--set variants: expected names ending in 'aligned' or 'unaligned'. "
            f"Received: {variant!r}"
        )

    def describe(self, data):
        out = {}
        for aligned, ds in data.items():
            present = (ds.labels > 0).sum(axis=0)
            out["aligned" if aligned else "unaligned"] = {
                "segments": int(len(ds)),
                "videos": int(len(set(ds.metadata["video"].tolist()))),
                "segments_with_emotion": dict(zip(MOSEI_EMOTIONS, present.tolist())),
                "skipped_videos": len(ds.info.get("skipped_videos", [])),
            }
        return out

    def folds(self, data):
        ds = next(iter(data.values()))
        videos = ds.metadata["video"]
        idx = video_split(videos, self.params["split"], self.params["split_seed"])
        for other in data.values():
            if len(other) != len(ds) or not np.array_equal(
                other.metadata["id"], ds.metadata["id"]
            ):
                raise ValueError(
                    "CMU-MOSEI: the aligned and unaligned loads hold different "
                    "segments; cannot share one split."
                )
        return [
            {
                "name": "holdout",
                "held_out": "80:10:10 split by video",
                "indices": idx,
                "groups": {
                    k: int(len(set(videos[v].tolist()))) for k, v in idx.items()
                },
            }
        ]

    def _xy(self, ds, idx):
        from mmfusion_keras.models.mosei_heads import emotion_targets

        x = {}
        for m in MODALITIES:
            x[m] = ds.inputs[m][idx]
            x[f"{m}_mask"] = ds.inputs[f"{m}_mask"][idx]
        y, _ = emotion_targets(ds.labels[idx], self.params["head"])
        return x, y

    def run_fold(self, data, fold, ctx, variants):
        import keras

        from mmfusion_keras.metrics import emotion_metrics

        p, idx = self.params, fold["indices"]
        for variant in variants:
            if ctx.done(variant):
                ctx.log(f"  {variant}: done (skipped)")
                continue
            ds = data[self._aligned(variant)]
            train = self._xy(ds, idx["train"])
            val = self._xy(ds, idx["validation"])
            test_x, _ = self._xy(ds, idx["test"])
            keras.utils.set_random_seed(ctx.seed)
            shapes = {m: ds.inputs[m].shape[1:] for m in MODALITIES}
            model = self.train(variant, shapes, train, val, ctx)
            scores = model.predict(test_x, batch_size=64, verbose=0)
            m = emotion_metrics(ds.labels[idx["test"]], scores, head=p["head"])
            ctx.save(
                variant,
                _flatten(m),
                {"parameters": int(model.count_params()), "emotion_metrics": m},
            )


class DeltaMosei(_MoseiRunner):
    """delta-mosei: the hierarchical model, stage-wise (Table 1) and end to end."""

    def train(self, variant, shapes, train, val, ctx):
        import keras

        from mmfusion_keras.models import build_hierarchical_delta_attention_model
        from mmfusion_keras.models import fit_hierarchical_stagewise
        from mmfusion_keras.models.mosei_heads import mosei_loss

        p = self.params
        model = build_hierarchical_delta_attention_model(
            shapes, len(MOSEI_EMOTIONS), head=p["head"], **p["model"]
        )
        if variant.startswith("stagewise"):
            fit_hierarchical_stagewise(
                model,
                train[0],
                train[1],
                recipe=p["table1"],
                validation_data=val,
                retrain_on_validation=p["retrain_on_validation"],
                compile_kwargs={"jit_compile": p["jit_compile"]},
            )
        else:
            model.compile(
                keras.optimizers.Adam(p["end_to_end"]["learning_rate"]),
                mosei_loss(p["head"]),
                jit_compile=p["jit_compile"],
            )
            model.fit(
                train[0],
                train[1],
                validation_data=val,
                epochs=p["end_to_end"]["epochs"],
                batch_size=p["end_to_end"]["batch_size"],
                verbose=0,
            )
        return model


class MultMosei(_MoseiRunner):
    """mult-mosei: MulT, aligned and unaligned."""

    def train(self, variant, shapes, train, val, ctx):
        import keras

        from mmfusion_keras.models import build_mult_model
        from mmfusion_keras.models.mosei_heads import mosei_loss

        p = self.params
        model = build_mult_model(
            [shapes[m] for m in MODALITIES],
            head=p["head"],
            num_classes=len(MOSEI_EMOTIONS),
            modality_names=MODALITIES,
            **p["model"],
        )
        model.compile(
            keras.optimizers.Adam(p["learning_rate"]),
            mosei_loss(p["head"]),
            jit_compile=p["jit_compile"],
        )
        callbacks = []
        if p["patience"]:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    patience=p["patience"], restore_best_weights=True
                )
            )
        model.fit(
            train[0],
            train[1],
            validation_data=val,
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            callbacks=callbacks,
            verbose=0,
        )
        return model


RUNNERS = {"delta-mosei": DeltaMosei, "mult-mosei": MultMosei}
