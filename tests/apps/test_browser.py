"""The demo page in a real browser: `mmfusion demo` + headless Chromium.

Starts the app with the CLI on a free localhost port, drives Debian's
`chromium` through the DevTools protocol (`apps/browser_driver.py`; a
screenshot taken with `--screenshot` alone is often blank: the page arrives
over a websocket), uploads files as a user does (`DOM.setFileInputFiles`),
and checks what the page says it used against the model run in this
process on the same files. Saves a screenshot; with
`MMFUSION_SAVE_SCREENSHOT=1` it is also copied to `docs/app_screenshot.png`.

Runs on one backend only (PyTorch: no XLA compile in the server, so the
page's four model loads are the quickest there): it tests the page, not
the backend.
"""

import base64
import io
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "apps"))

import browser_driver as bd  # noqa: E402

MARKER = "Predicted class:"
MODEL = "avdigits_mbaf"  # image + audio: every kind of input and chart
TWIN = "avdigits_concat"
SPEECH = "speech_text_mbaf"  # audio + text
SPEECH_TWIN = "speech_text_concat"
TEXT_BOX = "Replace the text"
BACKEND = "torch"

pytestmark = [
    pytest.mark.skipif(
        keras.config.backend() != BACKEND,
        reason=f"browser test runs once, on the {BACKEND} backend (it tests the page)",
    ),
    pytest.mark.skipif(
        bd.CHROMIUM is None,
        reason="Chromium is not installed (Debian: apt-get install -y chromium)",
    ),
]


def _files(folder):
    """A digit image, a corrupt WAV and a good WAV, written to `folder`."""
    import soundfile as sf
    from PIL import Image

    one = np.full((64, 48), 250, "uint8")
    one[8:56, 20:28] = 10  # a dark vertical stroke on light paper
    Image.fromarray(one, "L").save(folder / "one.png")
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00garbage!")
    t = np.arange(16000) / 16000
    sf.write(folder / "good.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype("float32"),
             16000, subtype="PCM_16")  # fmt: skip
    return folder / "one.png", folder / "broken.wav", folder / "good.wav"


def _expected(models_root, model, image_path, audio_path):
    """The prediction line the page must show for these files and model."""
    import demo_core as core

    image, _ = core.image_to_digit(image_path.read_bytes(), image_path.name)
    return _predicted(models_root, model, {"image": image, "audio": audio_path})


def _predicted(models_root, model, raw):
    """The prediction line for raw inputs (an audio path is decoded)."""
    import demo_core as core

    loaded = _loaded(models_root, model)
    raw = dict(raw)
    path = raw["audio"]
    raw["audio"], _ = core.decode_audio(path.read_bytes(), path.name)
    name, p = core.analyze(loaded, None, raw).predicted
    return f"{MARKER} {name} ({p:.0%})"


_LOADED = {}


def _loaded(models_root, model):
    import demo_core as core

    if model not in _LOADED:
        _LOADED[model] = core.load_model(models_root / model / "model.keras")
    return _LOADED[model]


# Sentences for the constructed speech-text case: with the test's clip, the
# model must give the typed sentence's class, not the bundled sample's.
SENTENCES = (
    "I am furious, this is outrageous and I hate it!",
    "What a wonderful day, I am so happy and delighted!",
    "I feel so sad and lonely, everything is lost.",
    "The meeting is at ten in room four.",
)


def _sentence_that_decides(models_root, clip):
    """`(sentence, expected line)`: a sentence whose class with `clip`
    differs from the class with bundled sample #0's sentence."""
    from mmfusion_keras.datasets.speech_text import load_speech_text

    sample = str(load_speech_text("test").inputs["text"][0])
    bundled = _predicted(models_root, SPEECH, {"audio": clip, "text": sample})
    for sentence in SENTENCES:
        line = _predicted(models_root, SPEECH, {"audio": clip, "text": sentence})
        if line.split(" (")[0] != bundled.split(" (")[0]:
            return sentence, line
    raise AssertionError(
        f"No test sentence changes {SPEECH}'s class with this clip ({bundled})"
    )


def _choose_model(page, name):
    """Picks `name` in the sidebar's model selectbox, as a user types it."""
    page.evaluate(
        'document.querySelectorAll(\'[data-testid="stSidebar"] '
        '[data-testid="stSelectbox"] input\')[1].focus()'
    )
    page.call("Input.insertText", text=name)
    for kind in ("keyDown", "keyUp"):
        page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                  windowsVirtualKeyCode=13)  # fmt: skip


def _type(page, label, text):
    """Types `text` into the text input labelled `label` and presses Enter."""
    page.evaluate(
        "Array.from(document.querySelectorAll('input[type=text]'))"
        f".find(e => (e.getAttribute('aria-label') || '').startsWith({label!r}))"
        ".focus()"
    )
    page.call("Input.insertText", text=text)
    for kind in ("keyDown", "keyUp"):
        page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                  windowsVirtualKeyCode=13)  # fmt: skip


def _box_value(page, label):
    return page.evaluate(
        "(Array.from(document.querySelectorAll('input[type=text]'))"
        f".find(e => (e.getAttribute('aria-label') || '').startsWith({label!r}))"
        " || {}).value"
    )


def test_uploads_survive_a_bad_file_and_a_model_switch(models_root, tmp_path):
    from PIL import Image

    image_path, broken, good = _files(tmp_path)
    log = tmp_path / "server.log"
    with bd.start_server(BACKEND, models_root, log) as url, bd.start_chromium() as page:
        page.call("Page.navigate", url=f"{url}/?model={MODEL}")

        def ready(*needles):
            def check():
                text = page.text()
                return all(n in text for n in needles) and page.idle()

            return check

        def wait(what, *needles, timeout=240):
            try:
                bd.wait(ready(*needles), timeout, what)
            except AssertionError as e:
                raise AssertionError(
                    f"{e}; page text ends: {page.text()[-800:]}"
                ) from e

        wait("the first page", MARKER, "Inputs used:")
        assert f"runs on {BACKEND}" in page.text().replace("`", "")
        # File inputs on this page: 0 the audio, 1 the image.
        page.upload(1, image_path)
        wait("the image upload", "image (uploaded 'one.png')")
        page.upload(0, broken)
        wait("the audio error", "Cannot use this audio file")
        text = page.text()
        assert "Error opening 'broken.wav'" in text and "BytesIO" not in text
        assert "one.png" in text, "the image upload was dropped"
        assert MARKER not in text
        page.upload(0, good)
        wait("the good clip", MARKER, "uploaded 'good.wav'")
        text = page.text()
        assert "image (uploaded 'one.png'); audio (uploaded 'good.wav', 1.00 s)" in text
        assert _expected(models_root, MODEL, image_path, good) in text
        assert "Cannot use this audio file" not in text
        bd.wait(lambda: page.evaluate(bd.CHARTS_DRAWN) >= 7, 60, "the charts")

        shot = page.call("Page.captureScreenshot", format="png")
        path = tmp_path / "app_screenshot.png"
        path.write_bytes(base64.b64decode(shot["data"]))

        # Another model of the same task: the uploads stay, shown and used.
        _choose_model(page, TWIN)
        wait("the model switch", f"Model {TWIN}", MARKER)
        text = page.text()
        assert "image (uploaded 'one.png'); audio (uploaded 'good.wav', 1.00 s)" in text
        assert text.count("one.png") >= 2 and text.count("good.wav") >= 2
        assert _expected(models_root, TWIN, image_path, good) in text

        # Another task: the uploads are cleared, on screen and in use.
        _choose_model(page, SPEECH)
        wait("the switch to speech-text", f"Model {SPEECH}", MARKER)
        text = page.text()
        assert "one.png" not in text and "good.wav" not in text
        assert "audio (bundled sample #0" in text and "text (bundled sample #0)" in text
        # A typed sentence survives a bad clip, and the good clip is used
        # with it: the class is the typed sentence's, not the sample's.
        sentence, line = _sentence_that_decides(models_root, good)
        _type(page, TEXT_BOX, sentence)
        wait("the typed sentence", f"text (typed): \u201c{sentence}")
        page.upload(0, broken)
        wait("the audio error", "Cannot use this audio file")
        assert MARKER not in page.text()
        assert _box_value(page, TEXT_BOX) == sentence
        page.upload(0, good)
        wait("the good clip", MARKER, "uploaded 'good.wav'")
        text = page.text()
        assert (
            f"audio (uploaded 'good.wav', 1.00 s); text (typed): \u201c{sentence}"
            in text
        )
        assert line in text, (line, text[-1500:])
        # Same task, another model: what the widgets show is what is used.
        _choose_model(page, SPEECH_TWIN)
        wait("the switch to the twin", f"Model {SPEECH_TWIN}", MARKER)
        text = page.text()
        assert _box_value(page, TEXT_BOX) == sentence
        assert text.count("good.wav") >= 2  # the uploader and "Inputs used"
        assert (
            f"audio (uploaded 'good.wav', 1.00 s); text (typed): \u201c{sentence}"
            in text
        )
        assert (
            _predicted(models_root, SPEECH_TWIN, {"audio": good, "text": sentence})
            in text
        )

    image = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("L"), "f4")
    assert image.shape == (2600, 1500)
    assert image.std() > 20, "the screenshot is (nearly) blank"
    if os.environ.get("MMFUSION_SAVE_SCREENSHOT") == "1":
        target = REPO / "docs" / "app_screenshot.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
