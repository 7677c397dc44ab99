"""Streamlit demo: what a memory-based attentive fusion model does with an input.

Start it with `mmfusion demo [--port 8501] [--backend jax]`, or
`streamlit run apps/demo_app.py`. The computation lives in `demo_core.py`
(next to this file); this file is the page.
"""

import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow's oneDNN kernels: every rerun runs other shapes between two
# predictions (the text encoder, the charts' data), and the first
# prediction after them cost 0.14-0.21 s of CPU with oneDNN against
# 0.07-0.11 s without (speech_text_mbaf, AppTest, 5 reruns x 2 runs each);
# whole reruns 0.48-0.66 s vs 0.35-0.47 s. Set before TensorFlow is imported;
# a value the user set is kept. No effect on JAX or PyTorch.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# Streamlit runs this file again on every rerun: insert the paths once.
_APPS = os.path.dirname(os.path.abspath(__file__))
if _APPS not in sys.path:
    sys.path.insert(0, _APPS)
# In a checkout, use the library next to this app (not another installed copy).
_REPO = os.path.dirname(_APPS)
if os.path.isdir(os.path.join(_REPO, "mmfusion_keras")) and _REPO not in sys.path:
    sys.path.insert(1, _REPO)

import demo_charts as charts  # noqa: E402
import demo_core as core  # noqa: E402
import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

OTHER_MODEL = "Other .keras file..."
NO_BLANK = "nothing"


# ---------------------------------------------------------------- caches


def _freeze():
    """Moves every object alive now out of the garbage collector's sight.

    Streamlit runs `gc.collect(2)` after every rerun (`runner.postScriptGC`)
    and Python runs full collections by itself; with Keras, the backends,
    the models and the text encoder loaded that is about 600 000 objects,
    0.3-0.4 s of CPU per collection, paid on every upload. The cached
    models and data live as long as the server: frozen (`gc.freeze`), the
    collections only walk what later reruns create.
    """
    gc.freeze()


@st.cache_resource(
    show_spinner="Loading the model and its text encoder (once per server; "
    "then cached)..."
)
def get_model(path, mtime):
    """A `core.LoadedModel`, once per file version and server process.

    A pretrained text encoder the card's text kind needs (MiniLM: several
    seconds to load) is loaded here too, under the spinner, not on the
    first upload.
    """
    del mtime  # part of the cache key only: a rewritten file is reloaded
    loaded = core.load_model(path)
    from mmfusion_keras.tasks import TEXT_KINDS
    from mmfusion_keras.tasks import prepare_inputs

    # Every text input of the card (its kind is one of the library's text
    # kinds, whatever the kind is called): one sentence through
    # `prepare_inputs` loads the kind's encoder (instant for a vocabulary).
    text = {
        name: spec
        for name, spec in loaded.card["preprocessing"]["inputs"].items()
        if spec.get("kind") in TEXT_KINDS
    }
    if text:
        prepare_inputs({"inputs": text}, {name: ["warm up"] for name in text})
    _freeze()
    return loaded


@st.cache_resource(
    show_spinner="Measuring the memory's reads on the bundled test split (once "
    "per model)..."
)
def get_reference(path, mtime):
    """`core.reference_reads` of a memory model, once per file version.

    The memory health's read figures (entropy, slots read) are figures of
    many inputs: they come from the task's bundled test split (the model
    card's figures when the card was written for this file, else a forward
    pass of the split), not from the one input on the page.
    """
    loaded = get_model(path, mtime)
    reference = core.reference_from_card(loaded) or core.reference_reads(loaded)
    _freeze()
    return reference


@st.cache_resource(
    show_spinner="Encoding the training sentences, to compare yours with them (once)..."
)
def get_text_reference(task, spec_json):
    """`core.text_reference` of a task's training sentences, once per task."""
    import json

    card = {"task": task, "preprocessing": {"inputs": {"text": json.loads(spec_json)}}}
    reference = core.text_reference(card)
    _freeze()
    return reference


@st.cache_resource(show_spinner="Loading the bundled test split...")
def get_test_samples(task):
    """`[(label, raw inputs dict, description)]` of a task's test split."""
    samples = []
    if task == "speech-text":
        from mmfusion_keras.datasets.speech_text import load_speech_text

        ds = load_speech_text("test")
        lengths = ds.metadata["audio_length"]
        for i, text in enumerate(ds.inputs["text"]):
            label = ds.class_names[int(ds.labels[i])]
            audio = ds.inputs["audio"][i][: int(lengths[i])]
            samples.append(
                (
                    label,
                    {"audio": audio, "text": str(text)},
                    f"{label}: \u201c{text}\u201d",
                )
            )
    elif task == "avdigits":
        from mmfusion_keras.datasets.av_digits import load_av_digits

        ds = load_av_digits("test")
        lengths = ds.metadata["audio_length"]
        for i in range(len(ds.labels)):
            label = ds.class_names[int(ds.labels[i])]
            audio = ds.inputs["audio"][i][-int(lengths[i]) :]  # front-padded
            image = ds.inputs["image"][i, :, :, 0]
            speaker = ds.metadata["speaker"][i]
            samples.append(
                (label, {"image": image, "audio": audio}, f"{label} (voice {speaker})")
            )
    _freeze()
    return samples


# ---------------------------------------------------------------- sidebar


def _streamlit_run_command():
    """The interpreter's arguments when started by `streamlit run`, else None.

    Streamlit rewrites `sys.argv` for the script, so this reads
    `sys.orig_argv`: `python -m streamlit run app.py ...` or
    `python .../bin/streamlit run app.py ...`.
    """
    argv = list(sys.orig_argv)
    for i, arg in enumerate(argv[:4]):
        is_streamlit = arg == "streamlit" or os.path.basename(arg) == "streamlit"
        if is_streamlit and argv[i + 1 : i + 2] == ["run"]:
            return argv[1:]
    return None


def backend_section():
    backend = core.configure_backend()
    st.sidebar.header("Keras backend")
    st.sidebar.markdown(f"This server runs on **`{backend}`**.")
    target = st.sidebar.selectbox(
        "Backend to restart under",
        core.BACKENDS,
        index=core.BACKENDS.index(backend) if backend in core.BACKENDS else 0,
        key="backend",
    )
    if st.sidebar.button("Restart under this backend", key="restart"):
        if target == backend:
            st.sidebar.info(f"Already running on `{backend}`.")
        elif _streamlit_run_command() is None:
            st.sidebar.warning(
                "This app was not started by `streamlit run`, so it cannot restart "
                f"itself. Start it with `mmfusion demo --backend {target}`."
            )
        else:
            st.sidebar.info(
                f"Restarting under `{target}`. The page loses its server for "
                "10-30 s: Streamlit shows a **Connection error** box meanwhile. "
                "Do not reload; the box closes by itself when the new server is "
                "up. Uploaded files are cleared: upload them again."
            )
            time.sleep(1.0)  # let the message reach the browser
            env = dict(os.environ, KERAS_BACKEND=target)
            command = [sys.executable, *_streamlit_run_command()]
            # Close the server's sockets (some are inheritable), so the new
            # process can listen on the same port.
            os.closerange(3, 65536)
            os.execve(sys.executable, command, env)
    st.sidebar.caption(
        "Keras fixes its backend when it is first imported, so switching restarts "
        "the server process (`os.execve` with `KERAS_BACKEND` set): Streamlit "
        'shows a "Connection error" box for 10-30 s, then the page reconnects '
        "by itself, with the uploads cleared. From a shell: "
        f"`mmfusion demo --backend {target}`."
    )
    return backend


def model_section():
    """Model choice in the sidebar; returns `(LoadedModel, twin or None)`."""
    st.sidebar.header("Model")
    shipped = core.shipped_models()
    options = [*shipped, OTHER_MODEL]
    names = list(shipped)
    # ?model=NAME in the URL picks the first model (links to a given model).
    requested = st.query_params.get("model")
    preferred = [
        n for n in (requested, "speech_text_mbaf", "avdigits_mbaf") if n in names
    ]
    default = names.index(preferred[0]) if preferred else 0
    choice = st.sidebar.selectbox(
        "Shipped model (saved_models/)", options, index=default, key="model"
    )
    if not shipped:
        st.sidebar.warning(
            f"No shipped models in {core.models_dir()}: build them with "
            "`scripts/build_saved_models.sh`, or type the path of a `.keras` file."
        )
    if choice == OTHER_MODEL:
        path = st.sidebar.text_input(
            "Path of a .keras model (its model_card.json must sit beside it)",
            key="model_path",
        ).strip()
        if not path:
            st.info("Type the path of a `.keras` model in the sidebar.")
            st.stop()
    else:
        path = shipped[choice]
    try:
        loaded = get_model(os.path.abspath(path), _mtime(path))
    except ValueError as e:
        st.error(f"Cannot use this model: {e}")
        st.stop()
    card = loaded.card
    metrics = card.get("test_metrics") or {}
    lines = [
        f"**Task** `{card['task']}`, **fusion** `{card['fusion']}`",
        f"**Classes** {', '.join(card['classes'])}",
    ]
    if "accuracy" in metrics:
        lines.append(
            f"**Test accuracy** {metrics['accuracy']:.1%} "
            f"(macro-F1 {metrics.get('macro_f1', float('nan')):.3f}), "
            f"trained on `{card.get('backend', '?')}`"
        )
    st.sidebar.markdown("  \n".join(lines))
    if card.get("command"):
        st.sidebar.code(card["command"], language="bash", wrap_lines=True)
    twin = None
    twin_path = core.find_twin(loaded.path, card)
    if twin_path is not None:
        try:
            twin = get_model(twin_path, _mtime(twin_path))
        except ValueError as e:
            st.sidebar.warning(f"Twin model not usable: {e}")
    return loaded, twin


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


# ---------------------------------------------------------------- inputs


def inputs_section(loaded):
    """Widgets for the inputs; returns `(raw inputs, sources, blank or None)`.

    Every widget is drawn before any input stops the page: a bad upload
    shows its error under its own widget, the other widgets keep their
    values, and no prediction is shown until it is fixed or removed.
    """
    card = loaded.card
    specs = card["preprocessing"]["inputs"]
    task = card["task"]
    kinds = {spec["kind"] for spec in specs.values()}
    if not set(specs) <= {"audio", "text", "image"} or "vector" in kinds:
        st.error(
            f"This demo shows audio, text and image models; task "
            f"{task!r} has inputs {sorted(specs)}."
        )
        st.stop()
    samples = get_test_samples(task)
    st.subheader("1. Inputs")
    left, right = st.columns(2)
    raw, sources, errors = {}, {}, {}
    with left:
        if samples:
            index = st.selectbox(
                "Bundled test sample (listed as true class: content)",
                range(len(samples)),
                format_func=lambda i: f"#{i} {samples[i][2]}",
                key=f"sample:{task}",
            )
            raw = dict(samples[index][1])
            sources = {name: f"bundled sample #{index}" for name in raw}
        st.caption(
            "Pick a test sample, then optionally replace any modality with your own "
            "input on the right. The line under the prediction says which inputs "
            "were used."
        )
    with right:
        if "audio" in specs:
            upload = st.file_uploader(
                "Replace the audio: a clip in WAV, FLAC, OGG or MP3",
                type=["wav", "flac", "ogg", "mp3", "m4a", "aac"],
                key=core.upload_key("audio_file", task),
            )
            if upload is not None:
                try:
                    raw["audio"], info = decode_upload(upload.getvalue(), upload.name)
                    sources["audio"] = f"uploaded {upload.name!r}"
                    st.caption(
                        f"{upload.name}: {info.source_format}, "
                        f"{info.source_sample_rate} Hz, {info.source_channels} "
                        f"channel(s), {info.duration_seconds:.2f} s; mixed to mono "
                        "and resampled to 16 kHz."
                    )
                except ValueError as e:
                    errors["audio"] = str(e)
                    st.error(f"Cannot use this audio file. {e}")
        if "text" in specs:
            text = st.text_input(
                "Replace the text: type your own sentence (empty: the sample's)",
                placeholder="I am so happy today!",
                key="text",
            )
            if text.strip():
                raw["text"], sources["text"] = text, "typed"
            text_file = st.file_uploader(
                "...or upload a .txt file (replaces the typed sentence)",
                type=["txt"],
                key=core.upload_key("text_file", task),
            )
            if text_file is not None:
                try:
                    text = core.read_text_file(text_file.getvalue(), text_file.name)
                    if not text:
                        raise ValueError(
                            f"{text_file.name!r} holds no text. Expected one sentence."
                        )
                    raw["text"] = text
                    sources["text"] = f"uploaded {text_file.name!r}"
                except ValueError as e:
                    errors["text"] = str(e)
                    st.error(str(e))
        if "image" in specs:
            upload = st.file_uploader(
                "Replace the image: a photo or scan of one digit (PNG or JPEG)",
                type=["png", "jpg", "jpeg"],
                key=core.upload_key("image_file", task),
            )
            if upload is not None:
                try:
                    raw["image"], image_notes = core.image_to_digit(
                        upload.getvalue(), upload.name
                    )
                    sources["image"] = f"uploaded {upload.name!r}"
                    st.caption(f"{upload.name}: " + "; ".join(image_notes) + ".")
                except ValueError as e:
                    errors["image"] = str(e)
                    st.error(f"Cannot use this image. {e}")
            with st.expander("How an uploaded image becomes the model's 8x8 input"):
                st.markdown(
                    "The model was trained on scikit-learn's 8x8 digits: bright ink "
                    "(1) on black (0), each pixel the amount of ink in a block of a "
                    "32x32 scan. Pillow turns the upload into grayscale (transparent "
                    "parts become white paper), pads it to a square, shrinks it to "
                    "8x8 by averaging areas, inverts it when the background is light "
                    "(dark ink on paper) and stretches it to [0, 1]. Use a large, "
                    "centred digit with thick strokes."
                )
    options = [NO_BLANK, *specs]
    blank = st.radio(
        "Blank one modality, to see what the other one contributes",
        options,
        horizontal=True,
        key="blank",
    )
    blank = None if blank == NO_BLANK else blank
    st.caption(
        "Blanking replaces "
        + "; ".join(f"**{m}** by {core.BLANK_DESCRIPTIONS[m]}" for m in specs)
        + ". The plots then compare the real input with the blanked one."
    )
    if errors:
        st.info(
            f"Fix or remove the {' and '.join(errors)} upload above to see a "
            "prediction; the other inputs keep their values."
        )
        st.stop()
    missing = [name for name in specs if name not in raw]
    if missing:
        st.info(f"Provide the {', '.join(missing)} input to see a prediction.")
        st.stop()
    return raw, sources, blank


@st.cache_data(show_spinner=False, max_entries=4)
def decode_upload(data, name):
    """`core.decode_audio`, once per uploaded file (not on every rerun)."""
    return core.decode_audio(data, name)


# ---------------------------------------------------------------- results


def chart(pair):
    """A Vega-Lite chart `(data, spec)` from `demo_charts`, drawn by the browser."""
    data, spec = pair
    spec.setdefault("autosize", charts.AUTOSIZE)
    st.vega_lite_chart(data, spec, width="stretch")


def results_section(loaded, twin, raw, sources, blank):
    reference = None
    if loaded.memory_layer is not None:
        reference = get_reference(loaded.path, _mtime(loaded.path))
    try:
        analysis = core.analyze(loaded, twin, raw, blank, reference)
    except ValueError as e:
        st.error(f"Cannot run the model on these inputs. {e}")
        st.stop()
    for note in analysis.notes:  # e.g. "audio 0: 5.20 s cropped to the model's 3.00 s"
        note = note.split(": ", 1)[-1]
        st.warning(f"The clip is too long: {note}; the rest is ignored (not shown).")
    name, probability = analysis.predicted
    st.subheader("2. Prediction")
    suffix = f" with {blank} blanked" if blank else ""
    st.markdown(f"### Predicted class: {name} ({probability:.0%}){suffix}")
    row = 1 if blank else 0
    parts = []
    if blank:
        full = analysis.probabilities[0]
        parts.append(
            f"with all inputs: **{analysis.class_names[int(np.argmax(full))]}** "
            f"({np.max(full):.0%})"
        )
    if analysis.twin_probabilities is not None:
        t = analysis.twin_probabilities[row]
        parts.append(
            f"twin {analysis.twin_label}{suffix}: "
            f"**{analysis.class_names[int(np.argmax(t))]}** ({np.max(t):.0%})"
        )
    else:
        parts.append("no twin model found to compare with")
    st.markdown("Same input, " + "; ".join(parts) + ".")
    used, input_warnings = core.inputs_used(loaded.card, raw, sources)
    st.markdown(used)
    for warning in input_warnings:
        st.warning(warning)
    text_spec = loaded.card["preprocessing"]["inputs"].get("text")
    if text_spec is not None and not sources.get("text", "").startswith("bundled"):
        import json

        reference = get_text_reference(
            loaded.card["task"], json.dumps(text_spec, sort_keys=True)
        )
        far = reference and core.far_from_training(reference, raw["text"])
        if far:
            st.warning(far)
    left, right = st.columns(2)
    with left:
        chart(charts.probability_chart(analysis))
        if analysis.image is not None:
            chart(charts.image_chart(analysis.image))
    with right:
        if analysis.waveform is not None:
            wave, spectrogram = charts.audio_charts(
                analysis.waveform, analysis.model_seconds
            )
            chart(wave)
            chart(spectrogram)
            st.audio(analysis.waveform, sample_rate=core.SAMPLE_RATE)
    st.subheader("3. Inside the model")
    if analysis.report is None and not analysis.attention:
        st.info(
            f"{loaded.label} has no memory or attention layer: nothing to inspect. "
            "Pick a model with a memory (MBAF, dual memory) or with cross-modal or "
            "delta self-attention to see what it reads and attends to."
        )
        return analysis
    if analysis.report is not None:
        memory_section(analysis)
    if analysis.attention:
        attention_section(analysis)
    return analysis


def memory_section(analysis):
    views = analysis.memories
    if len(views) == 1:
        st.markdown(
            "The layer reads its memory with weights **z** over the slots (MBAF: "
            "z = softmax(f_r(x) M^T), Eq. 2), composes x with the read vector "
            "m = zM, and weighs the composed features with self-attention (Eq. 5). "
            "The memory is written only in training: here it is the trained "
            "model's memory, unchanged."
        )
    else:
        st.markdown(
            f"The layer has {len(views)} memories. Each modality reads the *other* "
            "modality's memory with Gumbel-softmax weights **z** at a learned "
            "temperature (Dual Memory Fusion, Eq. 1-2; no noise at inference). "
            "The memories are written only in training: here they are the trained "
            "model's memories, unchanged."
        )
    where = views[0].reference
    st.markdown(
        "**Memory health** (distinct slots: no other slot at cosine > 0.99; "
        + (
            f"read entropy (1 = uniform) and slots read over {where}"
            if where
            else "no bundled test split for this task, so no read figures"
        )
        + "), and this input's own read:\n"
        + "\n".join(f"- {view.describe()}; {view.input_read()}" for view in views)
    )
    for view in views:
        warning = core.collapse_warning(view)
        if warning:
            st.warning(f"{warning} This comes from the trained weights, not the page.")
    for j, view in enumerate(views):
        if len(views) > 1:
            st.markdown(f"#### {view.title}")
        if view.temperature is not None:
            tau = float(np.ravel(view.temperature)[0])
            st.caption(
                f"{view.title}: learned read temperature for this input {tau:.3g}"
            )
        left, right = st.columns(2)
        with left:
            chart(charts.read_chart(analysis, view))
            if j == 0 and "attention" in analysis.report:
                chart(charts.attention_bar_chart(analysis))
        with right:
            chart(charts.memory_chart(view))
            if view.projection is not None:
                chart(charts.pca_chart(analysis, view))
                st.caption(
                    "PCA of the memory slots (rows of M). The cross is the input's "
                    "read vector m = zM projected with the same PCA, which equals "
                    "the read-weighted mean of the projected slots."
                )
            else:
                st.caption(
                    f"No PCA of {view.title}: it has "
                    f"{view.health['distinct_slots']} distinct slot(s) of "
                    f"{view.health['slots']} (or a spread at rounding scale), "
                    "nothing to project but noise."
                )


def attention_section(analysis):
    """Attention maps of the model's attention layers, for this input."""
    st.markdown(
        "**Attention** of each attention layer for this input, averaged over "
        "heads; each row (query step) sums to 1 over the key steps. "
        "Cross-modal attention (MulT, Eq. 1-3): one modality's steps (e.g. the "
        "words) attend to the other's (e.g. audio frames). Delta self-attention "
        "(hierarchical delta-attention, Eq. 9-12): a sequence attends to its own "
        "later steps within a window. Words in brackets are unknown to the model."
    )
    left, right = st.columns(2)
    for i, view in enumerate(analysis.attention):
        with left if i % 2 == 0 else right:
            chart(charts.attention_map_chart(view))


def main():
    start = time.perf_counter()
    st.set_page_config(page_title="mmfusion-keras demo", layout="wide")
    st.title("mmfusion-keras: multimodal fusion, live")
    # The first run of a server process imports Keras and its backend and
    # loads the model (10-30 s); later runs take them from the caches.
    with st.spinner(
        "Starting: importing Keras and loading the model (first page load only, "
        "10-30 s; later requests reuse them)..."
    ):
        backend = backend_section()
        loaded, twin = model_section()
    note = f"Model **{loaded.label}** on Keras backend **{backend}**."
    if loaded.card["task"] == "speech-text":
        note += (
            " The bundled speech+text corpus is synthetic (eSpeak NG voices with "
            "scripted prosody): it demonstrates the fusion code, not emotion "
            "recognition."
        )
    st.caption(note)
    raw, sources, blank = inputs_section(loaded)
    results_section(loaded, twin, raw, sources, blank)
    st.caption(
        f"This run took {1000 * (time.perf_counter() - start):.0f} ms on `{backend}` "
        "(the first run of a model also loads and compiles it)."
    )


main()
