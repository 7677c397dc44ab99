"""Per-cell differences between the SNR-grid variants, over seeds.

Reads the `snr_grid.csv` of one or more `mmfusion snr-grid` runs (one per
seed, or one `--seeds` run) and prints, for initial fusion minus each
later fusion, the mean (std) over seeds of the per-seed difference in
every test cell, plus how many cells favour initial fusion (on average,
in every seed), and each variant's grid mean and accuracy at the
training SNRs. The default 4 x 4 test grid only.

    python scripts/snr_grid_differences.py runs/grid32_s0 runs/grid32_s1 runs/grid32_s2
"""

import csv
import os
import sys

import numpy as np

from mmfusion_keras.experiments.snr_grid import SMALL_AUDIO_SNRS as AUDIO
from mmfusion_keras.experiments.snr_grid import SMALL_IMAGE_SNRS as IMAGE
from mmfusion_keras.experiments.snr_grid import accuracy_table
from mmfusion_keras.experiments.snr_grid import parse_snr


def load(directories):
    rows = []
    for d in directories:
        with open(os.path.join(d, "snr_grid.csv"), newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def grids(rows, variant):
    """`(seeds, audio, image)` accuracies of one variant."""
    audio, image = [parse_snr(a) for a in AUDIO], [parse_snr(v) for v in IMAGE]
    seeds = sorted({r["seed"] for r in rows})
    return np.stack(
        [
            accuracy_table([r for r in rows if r["seed"] == s], variant, audio, image)
            for s in seeds
        ]
    )


def main(directories):
    rows = load(directories)
    g = {v: grids(rows, v) for v in ("initial", "second", "fc")}
    train_audio, train_image = rows[0]["train_audio_snr"], rows[0]["train_image_snr"]
    train = None
    if train_audio in AUDIO and train_image in IMAGE:
        train = AUDIO.index(train_audio), IMAGE.index(train_image)
    for v, x in g.items():
        mean = x.mean(0)
        line = (
            f"{v}: grid mean {mean.mean():.3f} (per seed: "
            f"{', '.join(f'{m:.3f}' for m in x.mean((1, 2)))}); range of the "
            f"mean grid {mean.max() - mean.min():.3f}"
        )
        if train is not None:
            at = " / ".join(f"{a:.3f}" for a in x[:, train[0], train[1]])
            line += f"; at the training SNRs: {at}"
        print(line)
    for other in ("second", "fc"):
        d = g["initial"] - g[other]
        mean, std = d.mean(0), d.std(0)
        print(f"\ninitial minus {other}: mean (std) over seeds")
        print("| audio \\ image | " + " | ".join(IMAGE) + " |")
        print("|---" * (len(IMAGE) + 1) + "|")
        for i, a in enumerate(AUDIO):
            cells = " | ".join(
                f"{mean[i, j]:+.3f} ({std[i, j]:.3f})" for j in range(len(IMAGE))
            )
            print(f"| {a} | {cells} |")
        print(
            f"cells with mean difference >= 0: {int((mean >= 0).sum())} of 16; "
            f"> 0 in every seed: {int((d > 0).all(0).sum())}; "
            f"< 0 in every seed: {int((d < 0).all(0).sum())}; per seed, cells "
            f"initial >= {other}: {' / '.join(str(int((s >= 0).sum())) for s in d)}"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
