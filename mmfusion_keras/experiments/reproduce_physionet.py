"""PhysioNet CEBS recipe of `mmfusion reproduce`: mbaf-physionet.

Priyasad et al. 2021, section 4.2 and Table 2: three recording states
(basal, music, after music), the first 5 minutes of every record, 200 ms
chunks of 1000 samples, 6 consecutive chunks per example (non-overlapping),
two LSTMs of 512 per signal, fusion (naive = concatenation, or MBAF), Dense
1024 + dropout 0.5, softmax; Adam 0.001, batch 32; leave one subject group
out (4 groups of 5 subjects). Pairs: F-IV = ECG + RS, F-V = ECG + SCG,
F-VI = RS + SCG (ECG = ECG lead I).
"""

import glob
import os
import re

import numpy as np

from mmfusion_keras.datasets.physionet_cmebs import load_physionet_cmebs
from mmfusion_keras.datasets.physionet_cmebs import subject_group_folds

CEBS_LAYOUT = (
    "<root>/b001.hea + b001.dat ... b020, m001 ... m020, p001 ... p020 (WFDB "
    "records of PhysioNet 'cebsdb', optional RECORDS file)"
)
#: Fusion pair name -> the two loader channels.
PAIRS = {
    "F-IV": ("ecg_i", "respiration"),
    "F-V": ("ecg_i", "scg"),
    "F-VI": ("respiration", "scg"),
}


def check_cebs_root(root, subjects):
    """One-line errors for a wrong root or missing subjects/records."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"PhysioNet CEBS data root not found: '{root}'. Expected {CEBS_LAYOUT}."
        )
    names = [os.path.basename(p)[:-4] for p in glob.glob(os.path.join(root, "*.hea"))]
    records = {}
    for name in names:
        match = re.fullmatch(r"([bmp])(\d+)", name)
        if match:
            records.setdefault(int(match.group(2)), set()).add(match.group(1))
    if not records:
        raise FileNotFoundError(
            f"No CEBS WFDB record (b001.hea, m001.hea, ...) in '{root}'. Expected "
            f"{CEBS_LAYOUT}."
        )
    found = sorted(records)
    missing = [s for s in subjects if s not in records]
    if missing:
        raise ValueError(
            f"Partial PhysioNet CEBS copy in '{root}': found subjects {found}, "
            f"missing {missing} (the recipe uses subjects {list(subjects)}). Add "
            f"their b/m/p records, or run on what you have with --set "
            f"subjects={found}."
        )
    incomplete = {
        s: sorted(set("bmp") - records[s]) for s in subjects if records[s] != set("bmp")
    }
    if incomplete:
        raise ValueError(
            f"PhysioNet CEBS records missing in '{root}': subject -> missing "
            f"states {incomplete} (every subject needs b, m and p records)."
        )
    return found


class MbafPhysionet:
    """mbaf-physionet: NF vs MBAF for the pairs F-IV, F-V, F-VI."""

    def __init__(self, recipe, params):
        self.recipe, self.params = recipe, params

    def load(self, root, log):
        p = self.params
        subjects = list(p["subjects"])
        check_cebs_root(root, subjects)
        records = [f"{s}{n:03d}" for n in subjects for s in "bmp"]
        dataset = load_physionet_cmebs(
            root,
            records=records,
            chunk_samples=p["chunk_samples"],
            chunks_per_example=p["chunks_per_example"],
            max_samples_per_record=p["max_samples_per_record"],
            max_examples_per_record=p["max_examples_per_record"],
        )
        log(f"  {self.describe(dataset)['class_counts']} examples per state")
        return dataset

    def describe(self, dataset):
        counts = np.bincount(dataset.labels, minlength=len(dataset.class_names))
        return {
            "examples": int(len(dataset)),
            "class_counts": dict(zip(dataset.class_names, counts.tolist())),
            "subjects": sorted(set(dataset.metadata["subject"].tolist())),
        }

    def folds(self, dataset):
        groups = [[s for s in g] for g in self.params["subject_groups"]]
        subjects = dataset.metadata["subject"]
        present = set(subjects.tolist())
        groups = [[s for s in g if s in present] for g in groups]
        groups = [g for g in groups if g]
        folds = []
        for fold in subject_group_folds(dataset, groups):
            g = groups[fold["held_out"]]
            indices = {"train": fold["train"], "test": fold["test"]}
            folds.append(
                {
                    "name": f"group{fold['held_out'] + 1}",
                    "held_out": f"subjects {g}",
                    "indices": indices,
                    "groups": {
                        split: sorted(set(subjects[idx].tolist()))
                        for split, idx in indices.items()
                    },
                }
            )
        return folds

    def run_fold(self, dataset, fold, ctx, variants):
        import keras

        from mmfusion_keras.experiments.reproduce_iemocap import _metrics
        from mmfusion_keras.models.mbaf_networks import build_physionet_network
        from mmfusion_keras.runs import ShuffledBatches

        p, idx = self.params, fold["indices"]
        for variant in variants:
            if ctx.done(variant):
                ctx.log(f"  {variant}: done (skipped)")
                continue
            pair, _, fusion = variant.partition(" ")
            if pair not in PAIRS or fusion not in ("NF", "MBAF"):
                raise ValueError(
                    "--set variants: expected names like 'F-IV NF' or 'F-VI MBAF' "
                    f"(pairs {list(PAIRS)}). Received: {variant!r}"
                )
            keras.utils.set_random_seed(ctx.seed)
            modalities = PAIRS[pair]
            model = build_physionet_network(
                "concat" if fusion == "NF" else "mbaf",
                {"memory_slots": p["memory_slots"][pair]} if fusion == "MBAF" else None,
                chunks=p["chunks_per_example"],
                chunk_length=p["chunk_samples"],
                lstm_units=p["lstm_units"],
                dense_units=p["dense_units"],
                dropout=p["dropout"],
                num_classes=len(dataset.class_names),
                modalities=modalities,
            )
            model.compile(
                keras.optimizers.Adam(p["learning_rate"]),
                "sparse_categorical_crossentropy",
                jit_compile=p["jit_compile"],
            )
            x = {m: dataset.inputs[m] for m in modalities}
            train = ShuffledBatches(
                {m: v[idx["train"]] for m, v in x.items()},
                dataset.labels[idx["train"]],
                p["batch_size"],
                ctx.seed,
            )
            model.fit(train, epochs=int(p["epochs"]), verbose=0)
            probs = model.predict(
                {m: v[idx["test"]] for m, v in x.items()},
                batch_size=p["batch_size"],
                verbose=0,
            )
            metrics, details = _metrics(
                dataset.labels[idx["test"]], probs.argmax(-1), dataset.class_names
            )
            details.update(parameters=int(model.count_params()))
            ctx.save(variant, metrics, details)


RUNNERS = {"mbaf-physionet": MbafPhysionet}
