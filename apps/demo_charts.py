"""Vega-Lite charts of the demo page (drawn by the browser, not as PNGs).

Each function returns `(data, spec)` for `st.vega_lite_chart(data, spec)`:
a pandas DataFrame (sent to the browser as Arrow) and a Vega-Lite spec as a
plain dict. Building a spec takes well under a millisecond; the browser
draws it. The matplotlib figures in `demo_core` (PNG) stay for notebooks
and reports; the page uses these.
"""

import json

import numpy as np
import pandas as pd

SAMPLE_RATE = 16000
HEIGHT = 190
# Fit the width to the column; the height is the plot's, axes and legends
# come on top (Streamlit's default "fit" would squeeze the plot to nothing
# under a legend).
AUTOSIZE = {"type": "fit-x", "contains": "padding"}
# Heatmaps have thousands of rects: draw them on a canvas, without ARIA
# labels per mark (an SVG node per rect is what makes a page slow).
CANVAS = {
    "usermeta": {"embedOptions": {"renderer": "canvas"}},
    "config": {"aria": False},
}


def _spec(title, mark, encoding, height=HEIGHT, **extra):
    return {
        "title": title,
        "height": height,
        "mark": mark,
        "encoding": encoding,
        **extra,
    }


def _series(analysis, twin=True):
    """`[(series name, probabilities row)]`: real input, blanked, twin."""
    blank = analysis.blank
    rows = [(analysis.model_label, analysis.probabilities[0])]
    if blank:
        rows.append(
            (f"{analysis.model_label}, {blank} blanked", analysis.probabilities[1])
        )
    if twin and analysis.twin_probabilities is not None:
        rows.append((f"twin {analysis.twin_label}", analysis.twin_probabilities[0]))
        if blank:
            rows.append(
                (
                    f"twin {analysis.twin_label}, {blank} blanked",
                    analysis.twin_probabilities[1],
                )
            )
    return rows


def probability_chart(analysis):
    """Class probabilities: the model (and blanked row) and its twin."""
    records = [
        {"class": name, "probability": float(p), "model": series}
        for series, row in _series(analysis)
        for name, p in zip(analysis.class_names, row)
    ]
    series = [s for s, _ in _series(analysis)]
    spec = _spec(
        "Class probabilities",
        {"type": "bar", "tooltip": True},
        {
            "y": {"field": "class", "type": "nominal", "sort": analysis.class_names},
            "x": {
                "field": "probability",
                "type": "quantitative",
                "scale": {"domain": [0, 1]},
            },
            "yOffset": {"field": "model", "sort": series},
            "color": {
                "field": "model",
                "sort": series,
                "legend": {"orient": "bottom", "columns": 1, "labelLimit": 400},
            },
        },
        height=max(HEIGHT, 18 * len(series) * len(analysis.class_names)),
    )
    return pd.DataFrame.from_records(records), spec


def read_chart(analysis, view):
    """Read weights `z` over the slots of one memory (Eq. 2), uniform dotted."""
    z = np.asarray(view.read_weights)
    k = z.shape[-1]
    rows = [("input", z[0])]
    if analysis.blank:
        rows.append((f"{analysis.blank} blanked", z[1]))
    records = [
        {"slot": i, "weight": float(w), "input": name}
        for name, row in rows
        for i, w in enumerate(row)
    ]
    title = f"{view.title}: read weights z (dotted: uniform 1/{k})"
    if view.temperature is not None:
        title += f", temperature {float(np.ravel(view.temperature)[0]):.3g}"
    spec = {
        "title": title,
        "height": HEIGHT,
        "layer": [
            {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "slot", "type": "ordinal"},
                    "y": {
                        "field": "weight",
                        "type": "quantitative",
                        "title": "read weight",
                    },  # fmt: skip
                    "xOffset": {"field": "input"},
                    "color": {"field": "input", "legend": {"orient": "bottom"}},
                },
            },
            {
                "mark": {"type": "rule", "strokeDash": [2, 2], "color": "#555"},
                "encoding": {"y": {"datum": 1.0 / k}},
            },
        ],
    }
    return pd.DataFrame.from_records(records), spec


def attention_bar_chart(analysis):
    """MBAF's composition attention over the features of `f_c(x ⊕ m)` (Eq. 5)."""
    attention = np.asarray(analysis.report["attention"])
    units = attention.shape[-1]
    rows = [("input", attention[0])]
    if analysis.blank:
        rows.append((f"{analysis.blank} blanked", attention[1]))
    records = [
        {"feature": i, "attention": float(a), "input": name}
        for name, row in rows
        for i, a in enumerate(row)
    ]
    spec = {
        "title": f"Composition attention (Eq. 5; dotted: uniform 1/{units})",
        "height": HEIGHT,
        "layer": [
            {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {
                        "field": "feature",
                        "type": "quantitative",
                        "title": "composition feature (unit of f_c)",
                    },
                    "y": {"field": "attention", "type": "quantitative", "stack": None},
                    "color": {"field": "input", "legend": {"orient": "bottom"}},
                    "opacity": {"value": 0.7},
                },
            },
            {
                "mark": {"type": "rule", "strokeDash": [2, 2], "color": "#555"},
                "encoding": {"y": {"datum": 1.0 / units}},
            },
        ],
    }
    return pd.DataFrame.from_records(records), spec


# A heatmap with more cells than this is sent as one PNG image mark instead
# of one rect mark per cell: the browser then draws one mark, not thousands
# (the memory heatmap has slots x features cells, the spectrogram up to
# 64 x 150). Smaller ones (the 8x8 image, attention maps with word labels)
# stay rects, with a tooltip per cell.
IMAGE_CELLS = 1500
# Vega scheme -> matplotlib colormap of the same colours, for the PNGs.
_COLORMAPS = {"viridis": "viridis", "magma": "magma", "blues": "Blues",
              "greys": "Greys", "redblue": "RdBu"}  # fmt: skip


def _png_url(matrix, scheme, low, high, reverse=False, flip=False, pixels=(600, 240)):
    """A matrix coloured with a Vega scheme, as a `data:` PNG URL.

    Each cell becomes a block of whole pixels (nearest neighbour, about
    `pixels` in all), so the browser's smoothing of a scaled image does
    not blur the cells. `flip`: the first row at the bottom.
    """
    import base64
    import io

    from matplotlib import colormaps
    from PIL import Image

    matrix = np.asarray(matrix, "float64")
    cmap = colormaps[_COLORMAPS[scheme]]
    if reverse:
        cmap = cmap.reversed()
    scaled = np.clip((matrix - low) / ((high - low) or 1.0), 0.0, 1.0)
    rgba = cmap(np.nan_to_num(scaled), bytes=True)
    if flip:
        rgba = rgba[::-1]
    rows, cols = matrix.shape
    sy = max(1, int(np.ceil(pixels[1] / rows)))
    sx = max(1, int(np.ceil(pixels[0] / cols)))
    rgba = np.repeat(np.repeat(rgba, sy, axis=0), sx, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_heatmap(url, x, y, color, title, height=HEIGHT):
    """A Vega-Lite chart of one image mark spanning `x` and `y`.

    Args:
        url: the picture (`_png_url`).
        x, y: `(title, low, high, reverse)` of each axis; the image spans
            `[low, high]`.
        color: `(title, scale)` of the colour legend (drawn from an
            invisible layer holding the scale's domain).
    """
    (x_title, x0, x1, _), (y_title, y0, y1, y_reverse) = x, y
    x_enc = {
        "field": "x",
        "type": "quantitative",
        "title": x_title,
        "scale": {"domain": [x0, x1], "nice": False, "zero": False},
    }
    y_enc = {"field": "y", "type": "quantitative", "title": y_title,
             "scale": {"domain": [y0, y1], "nice": False, "zero": False,
                       "reverse": y_reverse}}  # fmt: skip
    legend_title, scale = color
    low, high = scale["domain"]
    spec = {
        **CANVAS,
        "title": title,
        "height": height,
        "layer": [
            {
                "mark": {"type": "image", "aspect": False},
                "encoding": {
                    "x": x_enc,
                    "x2": {"field": "x2"},
                    "y": y_enc,
                    "y2": {"field": "y2"},
                    "url": {"field": "url", "type": "nominal"},
                },
            },
            {
                "data": {"values": [{"v": low}, {"v": high}]},
                "mark": {"type": "point", "opacity": 0},
                "encoding": {
                    "color": {
                        "field": "v",
                        "type": "quantitative",
                        "title": legend_title,
                        "scale": scale,
                    },
                },
            },  # fmt: skip
        ],
    }
    data = pd.DataFrame({"x": [x0], "x2": [x1], "y": [y0], "y2": [y1], "url": [url]})
    return data, spec


def heatmap(matrix, title, x_title, y_title, scheme="viridis", diverging=False,
            x_labels=None, y_labels=None, height=HEIGHT):  # fmt: skip
    """A matrix as a Vega-Lite heatmap (rows on y, top to bottom; columns on x).

    Rect marks (one per cell, with tooltips) up to `IMAGE_CELLS` cells or
    with labelled axes; one PNG image mark otherwise.
    """
    matrix = np.asarray(matrix, "float64")
    rows, cols = matrix.shape
    if rows * cols > IMAGE_CELLS and x_labels is None and y_labels is None:
        if diverging:
            limit = float(np.percentile(np.abs(matrix), 99)) or 1.0
            low, high, reverse = -limit, limit, True
            scale = {"scheme": "redblue", "reverse": True, "domain": [low, high]}
        else:
            low, high, reverse = float(matrix.min()), float(matrix.max()), False
            scale = {"scheme": scheme, "domain": [low, high]}
        url = _png_url(matrix, "redblue" if diverging else scheme, low, high, reverse)
        return image_heatmap(
            url,
            (x_title, -0.5, cols - 0.5, False),
            (y_title, -0.5, rows - 0.5, True),
            ("value", scale),
            title,
            height,
        )
    ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    data = pd.DataFrame({"row": ii.ravel(), "col": jj.ravel(), "value": matrix.ravel()})
    x = {"field": "col", "type": "ordinal", "title": x_title}
    y = {"field": "row", "type": "ordinal", "title": y_title}
    if x_labels is not None:
        data["x"] = [str(x_labels[j]) for j in jj.ravel()]
        x = {"field": "x", "type": "ordinal", "title": x_title, "sort": None}
    if y_labels is not None:
        data["y"] = [str(y_labels[i]) for i in ii.ravel()]
        y = {"field": "y", "type": "ordinal", "title": y_title, "sort": None}
    if x_labels is None and cols > 40:
        x["axis"] = {
            "labelExpr": f"datum.value % {10 * (cols // 80 + 1)} ? '' : datum.label"
        }
    if y_labels is None and rows > 40:
        y["axis"] = {
            "labelExpr": f"datum.value % {10 * (rows // 80 + 1)} ? '' : datum.label"
        }
    color = {"field": "value", "type": "quantitative", "scale": {"scheme": scheme}}
    if diverging:
        limit = float(np.percentile(np.abs(matrix), 99)) or 1.0
        color["scale"] = {
            "scheme": "redblue",
            "reverse": True,
            "domain": [-limit, limit],
            "clamp": True,
        }
    spec = _spec(
        title,
        {"type": "rect", "tooltip": True},
        {"x": x, "y": y, "color": color},
        height=height,
        **CANVAS,
    )
    return data, spec


_MEMORY_CHARTS = {}


def memory_chart(view):
    """The memory matrix, slots x features (fixed at inference).

    The memory does not change between requests: its chart (a PNG) is
    built once per memory and kept (the 8 latest).
    """
    import hashlib

    memory = np.ascontiguousarray(view.memory, "float64")
    key = (view.title, tuple(view.spans), memory.shape,
           hashlib.sha1(memory.tobytes()).hexdigest())  # fmt: skip
    if key not in _MEMORY_CHARTS:
        if len(_MEMORY_CHARTS) >= 8:
            _MEMORY_CHARTS.pop(next(iter(_MEMORY_CHARTS)))
        _MEMORY_CHARTS[key] = _memory_chart(view)
    data, spec = _MEMORY_CHARTS[key]
    return data.copy(), json.loads(json.dumps(spec))


def _memory_chart(view):
    k, width = view.memory.shape
    spans = "; ".join(f"{name} {a}-{b - 1}" for name, a, b in view.spans)
    title = f"{view.title}: {k} slots x {width} features"
    return heatmap(
        view.memory,
        title,
        "memory feature" + (f" ({spans})" if spans else ""),
        "memory slot",
        diverging=True,
    )


def pca_chart(analysis, view):
    """Memory slots in 2-D (PCA), coloured by read weight, and the read vector."""
    slots, reads, explained = view.projection
    z = np.asarray(view.read_weights)[0]
    data = pd.DataFrame(
        {
            "pc1": slots[:, 0],
            "pc2": slots[:, 1],
            "weight": z,
            "slot": np.arange(len(z)),
        }
    )
    marks = [
        {"pc1": float(reads[0, 0]), "pc2": float(reads[0, 1]), "what": "read m = zM"}
    ]
    if analysis.blank:
        marks.append(
            {
                "pc1": float(reads[1, 0]),
                "pc2": float(reads[1, 1]),
                "what": f"read, {analysis.blank} blanked",
            }
        )
    x = {"field": "pc1", "type": "quantitative", "title": f"PC 1 ({explained[0]:.0%})"}
    y = {"field": "pc2", "type": "quantitative", "title": f"PC 2 ({explained[1]:.0%})"}
    spec = {
        "title": f"{view.title}: slots projected to 2-D (PCA)",
        "height": 240,
        "layer": [
            {
                "mark": {
                    "type": "circle",
                    "size": 60,
                    "tooltip": True,
                    "stroke": "#333",
                },
                "encoding": {
                    "x": x,
                    "y": y,
                    "color": {
                        "field": "weight",
                        "type": "quantitative",
                        "title": "read weight",
                    },  # fmt: skip
                },
            },
            {
                "data": {"values": marks},
                "mark": {
                    "type": "point",
                    "shape": "cross",
                    "size": 250,
                    "filled": True,
                },
                "encoding": {
                    "x": x,
                    "y": y,
                    "fill": {
                        "field": "what",
                        "scale": {"range": ["red", "orange"]},
                        "legend": {"orient": "bottom", "title": None},
                    },
                },
            },  # fmt: skip
        ],
    }
    return data, spec


def audio_charts(waveform, model_seconds):
    """Waveform envelope and spectrogram of the part of the clip the model takes.

    Returns:
        `(waveform chart, spectrogram chart)`, each `(data, spec)`.
    """
    from demo_core import spectrogram

    waveform = np.asarray(waveform, "float32").reshape(-1)
    seconds = len(waveform) / SAMPLE_RATE
    takes = int(model_seconds * SAMPLE_RATE) if model_seconds else len(waveform)
    used = waveform[:takes]
    title = f"Waveform, {len(used) / SAMPLE_RATE:.2f} s"
    if seconds > model_seconds > 0:
        title = (
            f"Waveform: the first {model_seconds:.2f} s of {seconds:.2f} s "
            "(the model takes no more)"
        )
    bins = min(400, max(1, len(used)))
    usable = len(used) // bins * bins
    chunks = used[:usable].reshape(bins, -1) if usable else np.zeros((1, 1))
    t = (np.arange(len(chunks)) + 0.5) * chunks.shape[1] / SAMPLE_RATE
    wave = pd.DataFrame({"time": t, "min": chunks.min(1), "max": chunks.max(1)})
    wave_spec = _spec(
        title,
        {"type": "area", "color": "#1f77b4"},
        {
            "x": {"field": "time", "type": "quantitative", "title": "time (s)"},
            "y": {"field": "min", "type": "quantitative", "title": "amplitude"},
            "y2": {"field": "max"},
        },
        height=110,
    )
    f, frames, db = spectrogram(used if len(used) else np.zeros(400))
    # Pool to at most 64 frequency bands x 150 frames: what a chart can show.
    fb = max(1, int(np.ceil(len(f) / 64)))
    tb = max(1, int(np.ceil(len(frames) / 150)))
    nf, nt = len(f) // fb, len(frames) // tb
    pooled = db[: nf * fb, : nt * tb].reshape(nf, fb, nt, tb).mean(axis=(1, 3))
    loudest = float(pooled.max())
    ff = f[: nf * fb].reshape(nf, fb).mean(1)
    tt = frames[: nt * tb].reshape(nt, tb).mean(1)
    dt = float(tt[1] - tt[0]) if len(tt) > 1 else 0.01
    df = float(ff[1] - ff[0]) if len(ff) > 1 else 100.0
    scale = {"scheme": "magma", "domain": [loudest - 80, loudest]}
    # One image mark (low frequencies at the bottom), not nf x nt rects.
    url = _png_url(pooled, "magma", loudest - 80, loudest, flip=True)
    spec_data, spectro_spec = image_heatmap(
        url,
        ("time (s)", float(tt[0] - dt / 2), float(tt[-1] + dt / 2), False),
        ("frequency (Hz)", float(ff[0] - df / 2), float(ff[-1] + df / 2), False),
        ("dB", scale),
        "Spectrogram (25 ms windows, 10 ms hop)",
        height=170,
    )
    return (wave, wave_spec), (spec_data, spectro_spec)


def image_chart(image):
    """The 8x8 image as the model receives it (black 0, white 1)."""
    data, spec = heatmap(
        image, "Image input, 8x8 (as the model sees it)", "pixel column",
        "pixel row", scheme="greys", height=200,
    )  # fmt: skip
    spec["encoding"]["color"]["scale"] = {"scheme": "greys", "reverse": True,
                                          "domain": [0, 1]}  # fmt: skip
    spec["width"] = 200
    return data, spec


def attention_map_chart(view):
    """An attention map, head-averaged: query steps (rows) x key steps."""
    what = (
        f"{view.query_axis}s attend to {view.key_axis}s"
        if view.kind == "cross-modal"
        else f"delta self-attention over {view.key_axis}s"
    )
    heads = view.weights.shape[0]
    return heatmap(
        view.mean,
        f"{view.name}: {what} (mean of {heads} heads)",
        f"key: {view.key_axis}",
        f"query: {view.query_axis}",
        scheme="blues",
        x_labels=view.key_labels,
        y_labels=view.query_labels,
        height=max(HEIGHT, min(420, 14 * len(view.query_labels))),
    )
