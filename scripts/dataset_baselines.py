"""Unimodal and fused baselines on the two bundled datasets.

    KERAS_BACKEND=jax python scripts/dataset_baselines.py

AV-Digits (Keras, on the active backend): an image branch (Dense on the 64
pixels), an audio branch (two Conv1D over the log-mel frames, global max
pooling), each alone with a softmax head; fused = both branches
concatenated under one head (feature-level fusion), and the product of the
two unimodal posteriors (late fusion). Trained with Adam on the train split, best
epoch by validation accuracy, reported on the test split (speakers and
images never seen in training). Three conditions, the same SNRs in every
split: clean; Barnum et al.'s training SNRs (audio 0.5, image 0.25, read as
power ratios: -3.0 / -6.0 dB); and audio -9 dB / image -3 dB, where both
modalities are degraded.

Speech+text (scikit-learn): text = binary bag of words + logistic
regression; audio = 17 prosodic statistics (pitch level and range from an
autocorrelation pitch tracker, energy, duration, voiced fraction, energy
peaks per second) + logistic regression; fused = both feature sets
concatenated (early fusion) and the product of the two unimodal posteriors
(late fusion). The label rule makes 75% the ceiling of either modality.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import CountVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from mmfusion_keras.datasets.av_digits import load_av_digits  # noqa: E402
from mmfusion_keras.datasets.speech_text import load_speech_text  # noqa: E402

SPLITS = ("train", "validation", "test")

# ----------------------------------------------------------------------------
# AV-Digits


def _image_branch(x):
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(64, activation="relu")(x)


def _audio_branch(x, normalizer):
    x = normalizer(x)
    x = keras.layers.Conv1D(32, 5, activation="relu")(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(64, 5, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.layers.Dense(64, activation="relu")(x)


def _av_model(kind, audio_shape, normalizer):
    image_in = keras.Input((8, 8, 1), name="image")
    audio_in = keras.Input(audio_shape, name="audio")
    if kind == "image":
        inputs, h = [image_in], _image_branch(image_in)
    elif kind == "audio":
        inputs, h = [audio_in], _audio_branch(audio_in, normalizer)
    else:
        inputs = [image_in, audio_in]
        # Dropout on each branch keeps the head from leaning on one modality.
        h = keras.layers.Concatenate()(
            [
                keras.layers.Dropout(0.5)(_image_branch(image_in)),
                keras.layers.Dropout(0.5)(_audio_branch(audio_in, normalizer)),
            ]
        )
        h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dropout(0.2)(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, out)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def av_digits_baselines(epochs, audio_snr_db=None, image_snr_db=None):
    data = {
        s: load_av_digits(
            s, audio_snr_db=audio_snr_db, image_snr_db=image_snr_db, features="mel"
        )
        for s in SPLITS
    }
    normalizer = keras.layers.Normalization(axis=-1)
    normalizer.adapt(data["train"].inputs["audio"])
    results, probs = {}, {}
    for kind in ("image", "audio", "fused"):
        keras.utils.set_random_seed(0)
        names = {"image": ["image"], "audio": ["audio"], "fused": ["image", "audio"]}
        x = {s: {k: data[s].inputs[k] for k in names[kind]} for s in SPLITS}
        model = _av_model(kind, data["train"].inputs["audio"].shape[1:], normalizer)
        model.fit(
            x["train"],
            data["train"].labels,
            validation_data=(x["validation"], data["validation"].labels),
            epochs=epochs,
            batch_size=64,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    monitor="val_accuracy",
                    patience=10,
                    restore_best_weights=True,
                )
            ],
        )
        probs[kind] = model.predict(x["test"], verbose=0)
        results[kind] = float(np.mean(probs[kind].argmax(1) == data["test"].labels))
    log_p = np.log(probs["image"] + 1e-9) + np.log(probs["audio"] + 1e-9)
    results["fused (late: product of posteriors)"] = float(
        np.mean(log_p.argmax(1) == data["test"].labels)
    )
    return results


# ----------------------------------------------------------------------------
# Speech+text

SAMPLE_RATE = 16000


def prosodic_features(audio, mask):
    """17 utterance-level statistics of pitch, energy and timing."""
    frame, hop = 400, 160  # 25 ms windows, 10 ms hop
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60  # pitch 60-400 Hz
    window = np.hanning(frame)
    rows = []
    for wave, real in zip(audio, mask):
        x = wave[real].astype(np.float64)
        n = 1 + (len(x) - frame) // hop
        frames = np.stack([x[i * hop : i * hop + frame] for i in range(n)])
        energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
        voiced = energy > energy.max() - 30
        f0 = []
        for fr in frames[voiced]:
            fr = (fr - fr.mean()) * window
            ac = np.fft.irfft(np.abs(np.fft.rfft(fr, 1024)) ** 2)[:frame]
            k = lo + int(np.argmax(ac[lo:hi]))
            if ac[k] > 0.4 * ac[0]:
                f0.append(SAMPLE_RATE / k)
        semitones = 12 * np.log2(np.asarray(f0 if len(f0) > 2 else [100.0] * 3))
        p10, p50, p90 = np.percentile(semitones, [10, 50, 90])
        smooth = np.convolve(energy, np.ones(5) / 5, "same")
        peaks = np.sum(
            (smooth[1:-1] > smooth[:-2])
            & (smooth[1:-1] >= smooth[2:])
            & (smooth[1:-1] > energy.max() - 20)
        )
        seconds = len(x) / SAMPLE_RATE
        loud = energy[voiced]
        rows.append(
            [
                p50,
                p10,
                p90,
                p90 - p10,
                np.std(semitones),
                np.mean(np.abs(np.diff(semitones))),
                loud.mean(),
                loud.std(),
                energy.max(),
                np.percentile(loud, 90) - np.percentile(loud, 10),
                seconds,
                voiced.mean(),
                peaks / seconds,
                peaks,
                len(f0) / max(voiced.sum(), 1),
                np.mean(np.abs(np.diff(energy))),
                np.log(seconds),
            ]
        )
    return np.asarray(rows)


def speech_text_baselines():
    data = {s: load_speech_text(s) for s in SPLITS}
    y = {s: data[s].labels for s in SPLITS}
    audio = {
        s: prosodic_features(data[s].inputs["audio"], data[s].inputs["audio_mask"])
        for s in SPLITS
    }
    vectorizer = CountVectorizer(binary=True)
    vectorizer.fit(data["train"].inputs["text"])
    text = {s: vectorizer.transform(data[s].inputs["text"]).toarray() for s in SPLITS}

    def logistic():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))

    text_model = LogisticRegression(max_iter=5000).fit(text["train"], y["train"])
    audio_model = logistic().fit(audio["train"], y["train"])
    early = logistic().fit(np.hstack([text["train"], audio["train"]]), y["train"])

    def accuracy(pred):
        return float(np.mean(pred == y["test"]))

    log_p = np.log(text_model.predict_proba(text["test"]) + 1e-9) + np.log(
        audio_model.predict_proba(audio["test"]) + 1e-9
    )
    return {
        "text": accuracy(text_model.predict(text["test"])),
        "audio": accuracy(audio_model.predict(audio["test"])),
        "fused (early: concatenated features)": accuracy(
            early.predict(np.hstack([text["test"], audio["test"]]))
        ),
        "fused (late: product of posteriors)": accuracy(np.argmax(log_p, axis=1)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.config.backend()}")

    start = time.time()
    st = speech_text_baselines()
    print("\nSpeech+text emotion (test, 108 utterances, 18 unseen speakers):")
    for name, acc in st.items():
        print(f"  {name:40s} {acc:.3f}")
    print(f"  ({time.time() - start:.0f} s)")

    for audio_snr, image_snr in ((None, None), (-3.0, -6.0), (-9.0, -3.0)):
        start = time.time()
        av = av_digits_baselines(args.epochs, audio_snr, image_snr)
        if audio_snr is None:
            cond = "clean"
        else:
            cond = f"audio SNR {audio_snr} dB, image SNR {image_snr} dB"
        print(f"\nAV-Digits, {cond} (test, 179 examples, 10 unseen speakers):")
        labels = {
            "image": "image-only",
            "audio": "audio-only",
            "fused": "fused (concatenated branch features)",
        }
        for name, acc in av.items():
            print(f"  {labels.get(name, name):40s} {acc:.3f}")
        print(f"  ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
