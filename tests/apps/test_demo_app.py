"""The Streamlit demo app, driven in-process with `streamlit.testing.v1.AppTest`.

Models come from the `models_root` fixture (tests/apps/conftest.py): the
shipped ones in `saved_models/`, or tiny ones trained for the test.
"""

import io
import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

import keras  # noqa: E402
import soundfile as sf  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "apps" / "demo_app.py"
sys.path.insert(0, str(REPO / "apps"))

import demo_core as core  # noqa: E402


@pytest.fixture
def app(models_root, monkeypatch):
    monkeypatch.setenv("MMFUSION_MODELS_DIR", str(models_root))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    return at


def wav_bytes(seconds, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    buffer = io.BytesIO()
    sf.write(buffer, tone.astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def png_bytes(pixels):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, "uint8"), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def texts(at, kind):
    return [element.value for element in getattr(at, kind)]


def prediction(at):
    found = [m for m in texts(at, "markdown") if m.startswith("### Predicted class:")]
    assert len(found) == 1, texts(at, "markdown")
    return found[0]


def pca_drawn(at, memories):
    """How many memories got a PCA (the others a "No PCA of" caption)."""
    captions = texts(at, "caption")
    drawn = sum(c.startswith("PCA of the memory slots") for c in captions)
    skipped = sum(c.startswith("No PCA of") for c in captions)
    assert drawn + skipped == memories, captions
    return drawn


def chart_titles(at):
    """Titles of the page's Vega-Lite charts, in page order."""
    return [
        json.loads(e.proto.spec).get("title", "") for e in at.get("vega_lite_chart")
    ]


def uploader(at, name, task="speech-text"):
    return at.file_uploader(key=core.upload_key(name, task))


def used(at):
    found = [m for m in texts(at, "markdown") if m.startswith("Inputs used:")]
    assert len(found) == 1, texts(at, "markdown")
    return found[0]


def choose(at, model):
    at.selectbox(key="model").set_value(model).run()
    assert not at.exception, at.exception


def test_default_page_shows_prediction_twin_memory_and_backend(app):
    assert texts(app, "error") == []
    assert app.selectbox(key="model").value == "speech_text_mbaf"
    classes = ("anger", "happiness", "neutral", "sadness")
    assert prediction(app).split(": ", 1)[1].split(" (")[0] in classes
    assert any("twin speech_text_concat" in m for m in texts(app, "markdown"))
    assert [s for s in texts(app, "subheader")] == [
        "1. Inputs",
        "2. Prediction",
        "3. Inside the model",
    ]
    # probabilities, waveform, spectrogram, read weights, attention, memory
    # heatmap, and the PCA only when the memory has something to project.
    titles = chart_titles(app)
    assert len(titles) == 6 + pca_drawn(app, 1), titles
    assert titles[0] == "Class probabilities" and titles[1].startswith("Waveform, ")
    assert titles[2] == "Spectrogram (25 ms windows, 10 ms hop)"
    backend = keras.config.backend()
    assert any(f"runs on **`{backend}`**" in m for m in texts(app, "markdown"))
    assert app.selectbox(key="backend").value == backend


def test_uploaded_long_wav_and_typed_text(app, models_root):
    card = core.read_card(models_root / "speech_text_mbaf" / "model.keras")
    takes = card["preprocessing"]["inputs"]["audio"]["samples"] / core.SAMPLE_RATE
    seconds = max(5.0, takes + 1.0)
    uploader(app, "audio_file").set_value(("clip.wav", wav_bytes(seconds), "audio/wav"))
    app.text_input(key="text").input("I am so glad to see you").run()
    assert not app.exception, app.exception
    assert texts(app, "error") == []
    assert (
        f"Waveform: the first {takes:.2f} s of {seconds:.2f} s (the model takes no "
        "more)" in chart_titles(app)
    )
    warnings = texts(app, "warning")
    expected = f"{seconds:.2f} s cropped to the model's {takes:.2f} s"
    assert any(expected in w for w in warnings), warnings
    assert any("WAV/PCM_16, 22050 Hz" in c for c in texts(app, "caption"))
    prediction(app)
    # A word vocabulary shows the sentence as its tokenizer saw it (lower
    # case); a pretrained encoder reads it whole and is named.
    text_spec = card["preprocessing"]["inputs"]["text"]
    if text_spec["kind"] == "tokens":
        seen = "\u201ci am so glad to see you\u201d"
    else:
        seen = (
            "\u201cI am so glad to see you\u201d (read whole by the pretrained "
            f"`{text_spec['kind']}` encoder)"
        )
    assert used(app).startswith(
        f"Inputs used: **audio** (uploaded 'clip.wav', {seconds:.2f} s, the first "
        f"{takes:.2f} s used); **text** (typed): {seen}"
    )
    # Another model of the same task: the same inputs, shown and used.
    choose(app, "speech_text_concat")
    assert uploader(app, "audio_file").value.name == "clip.wav"
    assert "**audio** (uploaded 'clip.wav'" in used(app)
    assert "**text** (typed)" in used(app)


def test_blanking_a_modality_compares_with_the_full_input(app):
    app.radio(key="blank").set_value("text").run()
    assert not app.exception, app.exception
    assert prediction(app).endswith("with text blanked")
    markdown = " ".join(texts(app, "markdown"))
    assert "with all inputs:" in markdown
    assert "twin speech_text_concat (naive concatenation) with text blanked" in markdown


def test_bad_audio_keeps_the_typed_text_and_the_app_recovers(app):
    app.text_input(key="text").input("xyzzy qwerty so glad asdf").run()
    uploader(app, "audio_file").set_value(
        ("clip.wav", b"RIFF\x10\x00\x00\x00garbage!", "audio/wav")
    ).run()
    assert not app.exception, app.exception
    errors = texts(app, "error")
    assert len(errors) == 1, errors
    assert re.search(r"Cannot decode audio file 'clip\.wav'", errors[0])
    assert "BytesIO" not in errors[0] and "Error opening 'clip.wav'" in errors[0]
    # Every input widget is still drawn, with its value; no prediction.
    assert app.text_input(key="text").value == "xyzzy qwerty so glad asdf"
    assert uploader(app, "text_file") is not None
    assert any("Fix or remove the audio upload" in i for i in texts(app, "info"))
    assert not [m for m in texts(app, "markdown") if m.startswith("### Predicted")]
    m4a_like = b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00" + bytes(64)
    uploader(app, "audio_file").set_value(("voice.m4a", m4a_like, "audio/mp4")).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(r"unsupported format: M4A", errors[0]), errors
    assert "ffmpeg" in errors[0]
    uploader(app, "audio_file").set_value(
        ("good.wav", wav_bytes(1.0), "audio/wav")
    ).run()
    assert texts(app, "error") == []
    prediction(app)
    line = used(app)
    assert "**audio** (uploaded 'good.wav', 1.00 s)" in line
    spec = _shown_card(app)["preprocessing"]["inputs"]["text"]
    if spec["kind"] == "tokens":
        assert (
            "**text** (typed): \u201c~~xyzzy~~ ~~qwerty~~ so glad ~~asdf~~\u201d"
            in line
        )
        # 3 of 5 words unknown: the page says so.
        assert any("Most words of this sentence" in w for w in texts(app, "warning"))
    else:
        assert "**text** (typed): \u201cxyzzy qwerty so glad asdf\u201d" in line


def _shown_card(app):
    # The `app` fixture points MMFUSION_MODELS_DIR at the models it serves.
    import os

    root = Path(os.environ["MMFUSION_MODELS_DIR"])
    name = app.selectbox(key="model").value
    return json.loads((root / name / "model_card.json").read_text())


def test_unknown_words_of_a_word_vocabulary_are_struck_through():
    from mmfusion_keras.tasks import get_task

    spec = get_task("speech-text", text_encoder="tokens").preprocessing["inputs"][
        "text"
    ]
    view = core.text_as_seen(spec, "xyzzy qwerty  so glad asdf")
    assert view.markdown.startswith("\u201c~~xyzzy~~ ~~qwerty~~ so glad ~~asdf~~\u201d")
    assert "Most words of this sentence" in view.warning
    assert core.text_as_seen(spec, "so glad").warning is None
    pretrained = core.text_as_seen({"kind": "minilm_sentence"}, "xyzzy  so glad")
    assert pretrained.markdown == (
        "\u201cxyzzy so glad\u201d (read whole by the pretrained "
        "`minilm_sentence` encoder)"
    )


def test_text_box_opens_without_error_and_bad_text_file(app):
    assert texts(app, "error") == []
    assert app.text_input(key="text").value == ""
    assert "**text** (bundled sample #0)" in used(app)
    uploader(app, "text_file").set_value(
        ("words.txt", b"\xff\xfe\xfa not utf-8", "text/plain")
    ).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(r"'words\.txt' is not a UTF-8", errors[0])
    uploader(app, "text_file").set_value(
        ("words.txt", b"I am furious!\n", "text/plain")
    ).run()
    assert texts(app, "error") == []
    prediction(app)
    if _shown_card(app)["preprocessing"]["inputs"]["text"]["kind"] == "tokens":
        seen = "\u201ci am furious\u201d"
    else:  # read whole, as typed (Markdown-escaped)
        seen = "\u201cI am furious\\!\u201d"
    assert f"**text** (uploaded 'words.txt'): {seen}" in used(app)


def test_image_uploads(app):
    choose(app, "avdigits_mbaf")
    assert app.selectbox(key="model").value == "avdigits_mbaf"
    # probabilities, image, audio, read weights, attention, memory, PCA
    assert len(chart_titles(app)) == 7 + pca_drawn(app, 1)
    images = core.upload_key("image_file", "avdigits")
    app.file_uploader(key=images).set_value(("empty.png", b"", "image/png")).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and "'empty.png' is empty (0 bytes)" in errors[0], errors
    app.file_uploader(key=images).set_value(
        ("digit.png", wav_bytes(0.1), "image/png")
    ).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(r"'digit\.png' is not an image", errors[0])
    blank = np.full((40, 40), 255)
    app.file_uploader(key=images).set_value(
        ("white.png", png_bytes(blank), "image/png")
    ).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(r"'white\.png' looks blank", errors[0])
    one = np.full((64, 48), 250)
    one[8:56, 20:28] = 10  # a dark vertical stroke on light paper
    app.file_uploader(key=images).set_value(
        ("one.png", png_bytes(one), "image/png")
    ).run()
    assert not app.exception, app.exception
    assert texts(app, "error") == []
    assert any("inverted" in c for c in texts(app, "caption"))
    prediction(app)
    assert used(app).startswith(
        "Inputs used: **image** (uploaded 'one.png'); **audio**"
    )
    # The corpus note is about the speech+text corpus only.
    assert not any("speech+text corpus" in c for c in texts(app, "caption"))
    # Back to speech-text: the digit upload is not carried over.
    choose(app, "speech_text_mbaf")
    assert "**audio** (bundled sample #0" in used(app)


def test_model_paths_that_are_not_keras_models(app, tmp_path, models_root):
    choose(app, "Other .keras file...")
    assert any("Type the path" in i for i in texts(app, "info"))
    app.text_input(key="model_path").input(str(tmp_path / "model.h5")).run()
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(
        r"Expected the path of a `\.keras`", errors[0]
    )
    fake = tmp_path / "fake" / "model.keras"
    fake.parent.mkdir()
    fake.write_bytes(zlib.compress(b"not a zip archive"))
    card = (models_root / "speech_text_mbaf" / "model_card.json").read_text()
    (fake.parent / "model_card.json").write_text(card)
    app.text_input(key="model_path").input(str(fake)).run()
    assert not app.exception, app.exception
    errors = texts(app, "error")
    assert len(errors) == 1 and re.search(
        r"Could not load .* as a Keras model", errors[0]
    )
    good = models_root / "speech_text_concat" / "model.keras"
    app.text_input(key="model_path").input(str(good)).run()
    assert texts(app, "error") == []
    assert any("has no memory or attention layer" in i for i in texts(app, "info"))
    assert any("twin speech_text_mbaf" in m for m in texts(app, "markdown"))


def test_blank_inputs_zero_exactly_one_modality(models_root):
    card = core.read_card(models_root / "speech_text_mbaf" / "model.keras")
    raw = {"audio": np.full(8000, 0.1, "float32"), "text": "so happy"}
    inputs, notes = core.make_inputs(card, raw, blank="text")
    assert notes == []
    assert inputs["audio"].shape[0] == inputs["text"].shape[0] == 2
    np.testing.assert_array_equal(inputs["audio"][0], inputs["audio"][1])
    assert inputs["text"][0].any() and not inputs["text"][1].any()
    inputs, _ = core.make_inputs(card, raw, blank="audio")
    assert inputs["audio"][0].any() and not inputs["audio"][1].any()
    with pytest.raises(ValueError, match=r"Cannot blank 'image': the model takes"):
        core.make_inputs(card, raw, blank="image")


def test_read_position_is_the_read_weighted_mean_of_projected_slots():
    rng = np.random.default_rng(0)
    memory = rng.standard_normal((6, 5))
    z = rng.dirichlet(np.ones(6), size=2)
    slots, reads, explained = core.project_memory(memory, z)
    np.testing.assert_allclose(reads, z @ slots, atol=1e-10)
    assert slots.shape == (6, 2) and explained[0] >= explained[1] > 0


def test_a_collapsed_memory_projects_to_zeros_without_nans():
    memory = np.tile(np.arange(5.0), (4, 1))  # four identical slots
    z = np.full((1, 4), 0.25)
    assert core.memory_collapsed(memory) and core.memory_spread(memory) == 0.0
    slots, reads, explained = core.project_memory(memory, z)
    assert not np.isnan(slots).any() and not np.isnan(reads).any()
    np.testing.assert_array_equal(explained, [0.0, 0.0])
    memory[2, 1] += 0.5
    assert not core.memory_collapsed(memory)


def test_shown_probabilities_equal_model_predict(app, models_root):
    # The page's numbers for a known input must be `model.predict`'s, on
    # the model loaded independently of the app (both rows: real, blanked).
    audio, text = wav_bytes(2.0), "I am so glad to see you"
    uploader(app, "audio_file").set_value(("clip.wav", audio, "audio/wav"))
    app.text_input(key="text").input(text).run()
    app.radio(key="blank").set_value("text").run()
    assert not app.exception, app.exception
    path = models_root / "speech_text_mbaf" / "model.keras"
    card = core.read_card(path)
    raw = {"audio": core.decode_audio(audio, "clip.wav")[0], "text": text}
    inputs, _ = core.make_inputs(card, raw, blank="text")
    model = keras.saving.load_model(path, compile=False)
    names = [t.name.split(":")[0] for t in model.inputs]
    expected = model.predict([inputs[n] for n in names], verbose=0)
    assert expected.shape == (2, len(card["classes"]))
    analysis = core.analyze(core.load_model(path), None, raw, blank="text")
    np.testing.assert_allclose(analysis.probabilities, expected, atol=1e-5)

    def shown(row):
        i = int(np.argmax(expected[row]))
        return f"{card['classes'][i]} ({expected[row, i]:.0%})"

    assert prediction(app) == f"### Predicted class: {shown(1)} with text blanked"
    markdown = " ".join(texts(app, "markdown"))
    assert f"with all inputs: **{shown(0).replace(' (', '** (')}" in markdown


# ------------------------------------------------------- dual memory views


def _token_card(models_root):
    """The shipped concat card with the bundled word-vocabulary text kind:
    the tiny test models embed word ids (the shipped ones may read frozen
    MiniLM features)."""
    import json

    from mmfusion_keras.tasks import get_task

    card = json.loads(
        (models_root / "speech_text_concat" / "model_card.json").read_text()
    )
    preprocessing = get_task("speech-text", text_encoder="tokens").preprocessing
    return {**card, "preprocessing": preprocessing}


def _dual_memory_model(folder, models_root, collapse):
    """A tiny untrained speech-text dual memory model with its card.

    `collapse`: rows of the audio memory and of the text memory to set to
    one repeated vector (0: leave the random memories).
    """
    import json

    from mmfusion_keras.models.task_models import build_speech_text_model

    card = _token_card(models_root)
    spec = card["preprocessing"]["inputs"]
    model = build_speech_text_model(
        len(spec["text"]["vocabulary"]) + 2,
        sequence_length=spec["text"]["length"],
        audio_samples=spec["audio"]["samples"],
        num_classes=len(card["classes"]),
        fusion="dual_memory",
        fusion_kwargs={
            "memory_slots": 10,
            "output_dim": 16,
            "writer_heads": 2,
            "seed": 0,
        },
    )
    fusion = model.get_layer("fusion")
    # Temperature 1 and small memory rows: soft reads that depend on the
    # input (random temperature weights can make every read one-hot).
    for dense in fusion.temperatures:
        dense.kernel.assign(np.zeros(tuple(dense.kernel.shape), "float32"))
        dense.bias.assign(np.ones(tuple(dense.bias.shape), "float32"))
    for memory, rows in zip(fusion.memories, collapse):
        m = 0.05 * np.random.default_rng(1).standard_normal(tuple(memory.shape))
        m[:rows] = m[0]
        memory.assign(m.astype("float32"))
    folder.mkdir()
    model.save(folder / "model.keras")
    card = {**card, "fusion": "dual_memory", "test_metrics": None}
    (folder / "model_card.json").write_text(json.dumps(card))


def _sequence_model(folder, models_root):
    """A tiny untrained speech-text sequence model with its card.

    Words (embedding, padding masked) attend to audio frames (log-mel
    frames, 0.1 s apart) with `CrossModalAttention`; the frames go through
    `DeltaSelfAttention`. Its card says `fusion: "sequence_attention"`: the
    app must find the views from the layers, not from a name.
    """
    import json

    from mmfusion_keras.layers import CrossModalAttention
    from mmfusion_keras.layers import DeltaSelfAttention

    card = _token_card(models_root)
    spec = card["preprocessing"]["inputs"]
    samples, length = spec["audio"]["samples"], spec["text"]["length"]
    audio = keras.Input((samples,), name="audio")
    text = keras.Input((length,), dtype="int32", name="text")
    mel = keras.layers.MelSpectrogram(
        fft_length=512, sequence_length=400, sequence_stride=1600,
        num_mel_bins=16, sampling_rate=16000,
    )(audio)  # fmt: skip
    frames = keras.layers.Dense(8)(keras.layers.Permute((2, 1))(mel) / 100.0)
    words = keras.layers.Embedding(
        len(spec["text"]["vocabulary"]) + 2, 8, mask_zero=True
    )(text)
    attended = CrossModalAttention(num_heads=2, name="words_to_audio")([words, frames])
    delta = DeltaSelfAttention(
        num_heads=2, filters=4, kernel_size=3, delta_window=5, name="audio_delta"
    )(frames)
    pooled = keras.layers.Concatenate()(
        [
            keras.layers.GlobalAveragePooling1D()(attended),
            keras.layers.GlobalAveragePooling1D()(delta),
        ]
    )
    out = keras.layers.Dense(len(card["classes"]), activation="softmax")(pooled)
    model = keras.Model([audio, text], out)
    folder.mkdir()
    model.save(folder / "model.keras")
    card = {**card, "fusion": "sequence_attention", "test_metrics": None}
    (folder / "model_card.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def dual_root(models_root, tmp_path_factory):
    """The test models plus two dual memory models (healthy, partly
    collapsed) and a sequence model with attention layers."""
    root = tmp_path_factory.mktemp("dual_models")
    for name in ("speech_text_concat", "speech_text_mbaf"):
        (root / name).symlink_to(models_root / name, target_is_directory=True)
    _dual_memory_model(root / "speech_text_dual_memory", models_root, (0, 0))
    _dual_memory_model(root / "speech_text_dual_collapsed", models_root, (9, 5))
    _sequence_model(root / "speech_text_attention", models_root)
    return root


@pytest.fixture
def dual_app(dual_root, monkeypatch):
    monkeypatch.setenv("MMFUSION_MODELS_DIR", str(dual_root))
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    return at


def test_dual_memory_model_shows_both_memories(dual_app):
    choose(dual_app, "speech_text_dual_memory")
    assert texts(dual_app, "error") == []
    markdown = texts(dual_app, "markdown")
    assert "#### Audio memory M_a" in markdown and "#### Text memory M_t" in markdown
    health = [m for m in markdown if m.startswith("**Memory health**")]
    assert len(health) == 1
    assert "Audio memory M_a: 10 of 10 slots distinct" in health[0]
    assert "Text memory M_t: 10 of 10 slots distinct" in health[0]
    captions = texts(dual_app, "caption")
    for title in ("Audio memory M_a", "Text memory M_t"):
        assert any(
            re.match(rf"{title}: learned read temperature for this input \d", c)
            for c in captions
        ), captions
    assert not any("slots identical" in w for w in texts(dual_app, "warning"))
    # probabilities, audio, and per memory: read weights, heatmap, PCA.
    assert pca_drawn(dual_app, 2) == 2
    titles = chart_titles(dual_app)
    assert len(titles) == 3 + 2 * 3, titles
    assert any(t.startswith("Audio memory M_a: read weights z") for t in titles)
    # The shipped concat model reads other text features (MiniLM) than this
    # word-vocabulary model: it is not offered as its twin.
    assert any("no twin model found to compare with" in m for m in markdown)
    assert not any("twin speech_text_concat" in m for m in markdown)


def test_partial_collapse_is_warned_and_not_projected(dual_app):
    choose(dual_app, "speech_text_dual_collapsed")
    warnings = texts(dual_app, "warning")
    audio = [w for w in warnings if w.startswith("Audio memory M_a:")]
    text = [w for w in warnings if w.startswith("Text memory M_t:")]
    assert len(audio) == 1 and "9 of 10 slots identical to another slot" in audio[0]
    assert "the memory has collapsed" in audio[0]
    assert len(text) == 1 and "5 of 10 slots identical to another slot" in text[0]
    assert "partly collapsed" in text[0]
    captions = texts(dual_app, "caption")
    assert any(
        c.startswith("No PCA of Audio memory M_a: it has 1 distinct slot(s) of 10")
        for c in captions
    ), captions
    # The text memory keeps 5 distinct slots: its PCA is drawn.
    assert pca_drawn(dual_app, 2) == 1


def test_sequence_model_shows_word_by_frame_and_delta_attention(dual_app):
    choose(dual_app, "speech_text_attention")
    assert texts(dual_app, "error") == []
    dual_app.text_input(key="text").input("I am so glad xyzzy").run()
    assert not dual_app.exception, dual_app.exception
    prediction(dual_app)
    assert not any("has no memory" in i for i in texts(dual_app, "info"))
    assert not any(
        m.startswith("**Memory health**") for m in texts(dual_app, "markdown")
    )
    specs = {
        json.loads(e.proto.spec).get("title", ""): e
        for e in dual_app.get("vega_lite_chart")
    }
    cross = "words_to_audio: words attend to audio frame (s)s (mean of 2 heads)"
    delta = "audio_delta: delta self-attention over audio frame (s)s (mean of 2 heads)"
    assert cross in specs and delta in specs, list(specs)


def test_attention_views_are_the_layers_weights(dual_root):
    from mmfusion_keras.attention_maps import attention_maps

    loaded = core.load_model(dual_root / "speech_text_attention" / "model.keras")
    raw = {"audio": np.full(8000, 0.1, "float32"), "text": "i am so glad xyzzy"}
    analysis = core.analyze(loaded, None, raw)
    cross, delta = analysis.attention
    # 5 words (the unknown one in brackets) x about 30 frames 0.1 s apart.
    assert cross.query_labels == ["0 i", "1 am", "2 so", "3 glad", "4 (xyzzy)"]
    frames = delta.weights.shape[-1]
    assert cross.weights.shape == (2, 5, frames) and cross.key_labels[1] == "0.10"
    assert delta.weights.shape == (2, frames, frames) and delta.kind == "delta"
    inputs, _ = core.make_inputs(loaded.card, raw)
    maps = attention_maps(loaded.model, [inputs[n] for n in loaded.input_names])
    np.testing.assert_allclose(
        cross.weights, maps["words_to_audio"][0, :, :5], atol=1e-6
    )
    np.testing.assert_allclose(cross.weights.sum(-1), 1.0, atol=1e-5)


def test_two_test_samples_read_differently(dual_root):
    loaded = core.load_model(dual_root / "speech_text_dual_memory" / "model.keras")
    rng = np.random.default_rng(3)
    raws = [
        {"audio": rng.standard_normal(8000).astype("float32") * 0.1, "text": text}
        for text in ("i am so happy today", "leave me alone now")
    ]
    first, second = (core.analyze(loaded, None, raw) for raw in raws)
    assert len(first.memories) == 2
    for a, b in zip(first.memories, second.memories):
        assert not np.allclose(a.read_weights[0], b.read_weights[0], atol=1e-6)
        np.testing.assert_array_equal(a.memory, b.memory)
    # The shown probabilities are the model's own.
    inputs, _ = core.make_inputs(loaded.card, raws[0])
    expected = loaded.model.predict([inputs[n] for n in loaded.input_names], verbose=0)
    np.testing.assert_allclose(first.probabilities, expected, atol=1e-5)


def test_memory_views_health_and_projection_rules():
    class Layer:
        memories = []

    rng = np.random.default_rng(0)
    healthy = rng.standard_normal((6, 4))
    collapsed = np.tile(healthy[:1], (6, 1))
    collapsed[0] += 1e-9  # negligible spread, cosine 1
    z = np.full((2, 6), 0.02)
    z[0, 1] = z[1, 4] = 0.9  # sharp reads: entropy well under 0.8 of uniform
    views = core.memory_views(
        Layer(),
        {"memory": [healthy, collapsed], "read_weights": [z, z]},
        [],
    )
    assert [v.title for v in views] == ["Memory 1", "Memory 2"]
    assert views[0].projection is not None and core.collapse_warning(views[0]) is None
    assert views[1].projection is None
    assert views[1].health["distinct_slots"] == 0
    assert "6 of 6 slots identical" in core.collapse_warning(views[1])


# ------------------------------------------------- memory health on the page


def _health_line(at):
    found = [m for m in texts(at, "markdown") if m.startswith("**Memory health**")]
    assert len(found) == 1, texts(at, "markdown")
    return found[0]


def test_health_reads_come_from_the_test_split_not_the_one_input(app, models_root):
    from mmfusion_keras.inspection import memory_is_collapsed

    choose(app, "avdigits_mbaf")
    card = _shown_card(app)
    if any(memory_is_collapsed(h) for h in card.get("memory_health") or []):
        pytest.skip("these avdigits_mbaf weights fail the health bar (tiny model)")
    line = _health_line(app)
    # One input reads one slot by construction: the read figures are the
    # bundled test split's, and the input's own read is shown as its own.
    found = re.search(
        r"over the (\d+) examples of the bundled avdigits test split", line
    )
    assert found and int(found.group(1)) > 1, line
    slots_read = re.search(r", (\d+) slots read \(top slot: (\d+)% of inputs\)", line)
    assert slots_read and int(slots_read.group(1)) > 1, line
    assert re.search(
        r"this input reads slot \d+ most \(weight [01]\.\d\d; entropy", line
    ), line
    assert "READS ONE SLOT" not in line and "COLLAPSED" not in line, line
    assert not any(w.startswith("Memory M:") for w in texts(app, "warning"))
    # The same on another sample: the figures do not move with the input.
    app.selectbox(key="sample:avdigits").set_value(5).run()
    assert _health_line(app).split(";")[0] == line.split(";")[0]


@pytest.fixture(scope="module")
def collapsed_model(models_root, tmp_path_factory):
    """avdigits_mbaf with every memory slot set to the first one."""
    source = models_root / "avdigits_mbaf"
    folder = tmp_path_factory.mktemp("collapsed") / "avdigits_mbaf_collapsed"
    folder.mkdir()
    model = keras.saving.load_model(source / "model.keras", compile=False)
    (layer,) = [
        layer for layer in model._flatten_layers() if hasattr(layer, "memories")
    ]
    for memory in layer.memories:
        m = keras.ops.convert_to_numpy(memory)
        memory.assign(np.tile(m[:1], (len(m), 1)))
    model.save(folder / "model.keras")
    (folder / "model_card.json").write_text((source / "model_card.json").read_text())
    return folder / "model.keras"


def test_a_collapsed_memory_is_still_warned(app, collapsed_model):
    choose(app, "Other .keras file...")
    app.text_input(key="model_path").input(str(collapsed_model)).run()
    assert not app.exception, app.exception
    line = _health_line(app)
    assert ": COLLAPSED" in line, line
    warnings = [w for w in texts(app, "warning") if w.startswith("Memory M:")]
    assert len(warnings) == 1 and "the memory has collapsed" in warnings[0], warnings


def test_reads_of_one_slot_are_judged_on_the_reference_not_one_input():
    from mmfusion_keras.inspection import describe_memory_health

    class Layer:
        memories = []

    memory = np.eye(6, 8)
    one_slot = np.full((12, 6), 0.01)
    one_slot[:, 2] = 0.95  # every example reads slot 2
    input_read = one_slot[:1]
    alone = core.memory_views(
        Layer(), {"memory": memory, "read_weights": input_read}, []
    )
    assert "READS ONE SLOT" not in alone[0].describe()
    assert "slots read" not in alone[0].describe()
    assert core.collapse_warning(alone[0]) is None
    reference = core.Reference([one_slot], 12, "the 12 examples of a test")
    views = core.memory_views(
        Layer(), {"memory": memory, "read_weights": input_read}, [], reference
    )
    assert views[0].describe().endswith(": READS ONE SLOT")
    assert "100% of the 12 examples of a test read the same slot" in (
        core.collapse_warning(views[0])
    )
    assert views[0].input_read() == (
        "this input reads slot 2 most (weight 0.95; entropy 0.16 of uniform)"
    )
    # Few inputs: the figures are shown, no verdict rests on them.
    health = {**views[0].health, "inputs": 3}
    assert "1 slots read" in describe_memory_health(health)
    assert not describe_memory_health(health).endswith("READS ONE SLOT")


def test_a_backend_restart_clears_the_uploads_on_screen_and_in_use(app, monkeypatch):
    # `os.execve` starts a new server process with a new `SERVER_TOKEN`; the
    # browser reconnects and sends its widget states again. Simulated here
    # by changing the token between two runs of the same session.
    old = uploader(app, "audio_file")
    old.set_value(("clip.wav", wav_bytes(1.0), "audio/wav"))
    app.text_input(key="text").input("I am so glad to see you").run()
    assert "**audio** (uploaded 'clip.wav', 1.00 s)" in used(app)
    old_key = core.upload_key("audio_file", "speech-text")
    monkeypatch.setattr(core, "SERVER_TOKEN", core.SERVER_TOKEN + "restarted")
    app.run()
    assert not app.exception, app.exception
    keys = [u.key for u in app.get("file_uploader")]
    assert old_key not in keys
    assert uploader(app, "audio_file").value is None  # shown empty ...
    assert "**audio** (bundled sample #0, " in used(app)  # ... and not used
    # The typed sentence is a widget value the browser keeps: shown and used.
    assert app.text_input(key="text").value == "I am so glad to see you"
    assert "**text** (typed)" in used(app)


def test_large_heatmaps_are_one_image_mark_with_the_cells_colours():
    import base64

    import demo_charts as charts
    from matplotlib import colormaps
    from PIL import Image

    matrix = np.arange(40 * 50, dtype="float64").reshape(40, 50)
    data, spec = charts.heatmap(matrix, "big", "column", "row")
    image_layer, legend_layer = spec["layer"]
    assert image_layer["mark"]["type"] == "image" and len(data) == 1
    assert image_layer["encoding"]["y"]["scale"]["reverse"] is True  # row 0 on top
    assert legend_layer["encoding"]["color"]["scale"]["domain"] == [0.0, 1999.0]
    url = data["url"][0]
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    pixels = np.asarray(png.convert("RGBA"))
    assert pixels.shape[0] % 40 == 0 and pixels.shape[1] % 50 == 0
    cell_h, cell_w = pixels.shape[0] // 40, pixels.shape[1] // 50
    viridis = colormaps["viridis"]
    for row, col in ((0, 0), (39, 49), (20, 7)):
        expected = viridis(matrix[row, col] / 1999.0, bytes=True)
        got = pixels[row * cell_h + cell_h // 2, col * cell_w + cell_w // 2]
        np.testing.assert_array_equal(got, expected)
    # Small or labelled heatmaps keep one rect (and tooltip) per cell.
    data, spec = charts.heatmap(matrix[:8, :8], "small", "column", "row")
    assert spec["mark"]["type"] == "rect" and len(data) == 64


def test_a_typed_sentence_far_from_the_training_sentences_is_warned(app):
    spec = _shown_card(app)["preprocessing"]["inputs"]["text"]
    if spec["kind"] not in ("minilm_sentence", "minilm_tokens"):
        pytest.skip("the shown model reads a word vocabulary (unknown words marked)")
    app.text_input(key="text").input("lorem ipsum dolor sit amet").run()
    assert not app.exception, app.exception
    far = [w for w in texts(app, "warning") if "far from every sentence" in w]
    assert len(far) == 1, texts(app, "warning")
    assert re.search(r"at cosine 0\.[01]\d in the MiniLM sentence space", far[0])
    prediction(app)  # a warning, not a refusal
    app.text_input(key="text").input("I am so glad to see you again").run()
    assert not any("far from every sentence" in w for w in texts(app, "warning"))


def test_far_from_training_uses_the_closest_training_sentence():
    reference = core.TextReference(
        ["a", "b"], np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 64
    )
    import mmfusion_keras.datasets.text as text_module

    vectors = {"near": [0.6, 0.8, 0.0], "far": [0.2, 0.1, 0.97]}

    def fake(texts, max_tokens):
        return np.array([vectors[t] for t in texts])

    original = text_module.minilm_sentence_features
    text_module.minilm_sentence_features = fake
    try:
        assert core.far_from_training(reference, "near") is None
        warning = core.far_from_training(reference, "far")
    finally:
        text_module.minilm_sentence_features = original
    assert "closest: \u201ca\u201d at cosine 0.20" in warning


def test_make_inputs_encodes_each_sentence_once(models_root, monkeypatch):
    # A new clip with the same sentence reuses the sentence's features; the
    # features equal `prepare_inputs` of the whole card, in the card's order.
    from mmfusion_keras import tasks

    card = _token_card(models_root)
    calls = []
    encode = tasks._text_features

    def counting(spec, texts):
        calls.append(list(texts))
        return encode(spec, texts)

    monkeypatch.setattr(tasks, "_text_features", counting)
    core._text_inputs.cache_clear()
    sentence = "I am so happy today xyzzy"
    for seconds in (1.0, 1.5):
        audio = np.full(int(seconds * 16000), 0.1, "float32")
        inputs, notes = core.make_inputs(card, {"audio": audio, "text": sentence})
        expected, expected_notes = tasks.prepare_inputs(
            card["preprocessing"], {"audio": [audio], "text": [sentence]}
        )
        assert list(inputs) == list(card["preprocessing"]["inputs"])
        for name in expected:
            np.testing.assert_array_equal(inputs[name], expected[name])
        assert notes == expected_notes
    # Two make_inputs calls, two reference calls: the cached path ran once.
    assert calls == [[sentence]] * 3, calls
    inputs["text"][...] = 0  # the caller's copy, not the cache
    again, _ = core.make_inputs(card, {"audio": audio, "text": sentence})
    np.testing.assert_array_equal(again["text"], expected["text"])
