"""Typed-sentence sanity cases of issue 17 on the shipped speech-text models.

    python scripts/speech_text_sanity.py [saved_models/speech_text_* ...]

For each model (default: every `saved_models/speech_text_*` folder), prints
the class probabilities for typed sentences paired with one bundled test
clip spoken with neutral prosody (its own sentence is neutral too, so its
label is neutral), with the notes `prepare_inputs` gives (unknown words):

- the clip's own sentence (reference),
- "xyzzy 🤖 qwerty asdf" (no meaning: the audio should decide, so neutral),
- "I hate you, this is the worst day ever and I am furious!!!" (anger: an
  emotional text decides the label under the corpus's rule).

Then, over all 54 test clips spoken with neutral prosody, the share of
clips whose prediction is neutral with the nonsense text and anger with the
angry text (the typed sentence replaces each clip's own).

The features come from each model card's preprocessing, as in the CLI and
the demo app.
"""

import glob
import json
import os
import sys

import keras
import numpy as np

from mmfusion_keras.datasets.speech_text import load_speech_text
from mmfusion_keras.tasks import prepare_inputs

SENTENCES = (
    None,
    "xyzzy 🤖 qwerty asdf",
    "I hate you, this is the worst day ever and I am furious!!!",
)


def neutral_clips():
    """All test clips with neutral prosody, and the first one whose
    sentence is neutral too."""
    ds = load_speech_text("test")
    meta = ds.metadata
    neutral = np.flatnonzero(meta["prosody_emotion"] == "neutral")
    clips = [ds.inputs["audio"][i][: int(meta["audio_length"][i])] for i in neutral]
    first = [k for k, i in enumerate(neutral) if meta["text_emotion"][i] == "neutral"][
        0
    ]
    return clips, str(ds.inputs["text"][neutral[first]]), first, int(neutral[first])


def main(folders):
    clips, own_text, first, index = neutral_clips()
    audio = clips[first]
    print(f"clip: test #{index} (neutral prosody), its sentence: {own_text!r}")
    for folder in folders:
        with open(os.path.join(folder, "model_card.json"), encoding="utf-8") as f:
            card = json.load(f)
        model = keras.saving.load_model(
            os.path.join(folder, "model.keras"), compile=False
        )
        kind = card["preprocessing"]["inputs"]["text"]["kind"]
        print(f"\n{folder} (text kind {kind}):")
        for sentence in SENTENCES:
            text = own_text if sentence is None else sentence
            inputs, notes = prepare_inputs(
                card["preprocessing"], {"audio": [audio], "text": [text]}
            )
            p = model.predict(inputs, verbose=0)[0]
            top = int(np.argmax(p))
            shown = " ".join(f"{c} {q:.2f}" for c, q in zip(card["classes"], p))
            print(f"  {text!r}: {card['classes'][top]} ({shown})")
            for note in notes:
                print(f"    note: {note}")
        for sentence, wanted in zip(SENTENCES[1:], ("neutral", "anger")):
            inputs, _ = prepare_inputs(
                card["preprocessing"],
                {"audio": clips, "text": [sentence] * len(clips)},
            )
            predicted = np.argmax(model.predict(inputs, verbose=0), axis=-1)
            share = np.mean(predicted == card["classes"].index(wanted))
            counts = np.bincount(predicted, minlength=len(card["classes"]))
            print(
                f"  {sentence!r} on the {len(clips)} neutral-prosody test clips: "
                f"{wanted} {share:.2f} (predicted counts "
                f"{dict(zip(card['classes'], counts.tolist()))})"
            )


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(glob.glob("saved_models/speech_text_*")))
