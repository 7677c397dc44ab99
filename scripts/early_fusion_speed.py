"""Training speed of the early-fusion models on the active Keras backend.

Usage: KERAS_BACKEND=tensorflow python scripts/early_fusion_speed.py UNITS DENSE
VARIANTS [EPOCHS], e.g. `... 16 32 initial`. Random AV-Digits-shaped inputs
(128 examples, 8x8x1 images, 79x201 spectrograms), batch 64: one epoch
(compiles), then EPOCHS more epochs (default 1; 2 steps each) timed in wall
and process CPU seconds. Prints the second epoch and, with EPOCHS > 1, the
fastest of the timed epochs (less sensitive to a loaded machine).
"""

import sys
import time

import keras
import numpy as np

from mmfusion_keras.models import build_early_fusion_model


def main(argv):
    units, dense, variants = int(argv[0]), int(argv[1]), argv[2].split(",")
    epochs = int(argv[3]) if len(argv) > 3 else 1
    n = 128
    rng = np.random.default_rng(0)
    x = {
        "image": rng.random((n, 8, 8, 1), dtype="float32"),
        "audio": rng.random((n, 79, 201), dtype="float32"),
    }
    y = rng.integers(0, 10, n)
    for fusion in variants:
        model = build_early_fusion_model(fusion, units=units, dense_units=dense)
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile="auto")
        times = []
        for _ in range(1 + epochs):
            t, c = time.time(), time.process_time()
            model.fit(x, y, batch_size=64, epochs=1, verbose=0)
            times.append((time.time() - t, time.process_time() - c))
        best = ""
        if epochs > 1:
            wall = min(t[0] for t in times[1:])
            cpu = min(t[1] for t in times[1:])
            best = f", fastest of {epochs} epochs {wall:.1f} s (cpu {cpu:.1f})"
        print(
            f"{keras.config.backend()} {fusion} units={units}: epoch 1 "
            f"{times[0][0]:.1f} s (cpu {times[0][1]:.1f}), epoch 2 (2 steps) "
            f"{times[1][0]:.1f} s (cpu {times[1][1]:.1f}){best}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
