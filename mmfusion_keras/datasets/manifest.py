"""Loader for a user's own folder described by a `manifest.csv`.

Layout::

    my_data/
        manifest.csv
        clips/a.wav
        images/a.png
        ...

`manifest.csv` has a header row with a `label` column and one or more of:

* `audio`: path of an audio file, relative to the folder (any format
  `load_audio` reads);
* `image`: path of an image file, relative to the folder (any format
  Pillow reads);
* `text`: the text itself.

Other columns are kept as string metadata. Example::

    label,audio,text
    yes,clips/a.wav,the answer is yes
    no,clips/b.wav,certainly not
"""

import csv
import os

import numpy as np

from mmfusion_keras.datasets.audio import load_audio
from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset

MODALITY_COLUMNS = ("audio", "image", "text")


def _load_image(path, where, image_size, image_mode):
    from PIL import Image
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(image_mode)
            if image_size is not None:
                height, width = image_size
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype="float32") / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"Cannot read image file '{path}' ({where}): {e}") from e
    if array.ndim == 2:
        array = array[..., None]
    return array


def _is_index(text):
    return text.isdigit() and text.isascii()


def _label_mode(labels_text, class_names, where):
    """`"names"`, or `"indices"` when the labels are class indices.

    Labels are class indices when none of them is a class name, every one is
    an integer in `0..len(class_names) - 1`, and no class name is itself an
    integer (then `"3"` would be ambiguous).
    """
    if all(lab in class_names for lab in labels_text):
        return "names"
    numeric_names = any(_is_index(c) for c in class_names)
    if not numeric_names and not any(lab in class_names for lab in labels_text):
        if all(_is_index(lab) and int(lab) < len(class_names) for lab in labels_text):
            return "indices"
    for i, label in enumerate(labels_text):
        if label not in class_names:
            hint = (
                ""
                if numeric_names
                else f" (or, in every row, a class index 0..{len(class_names) - 1})"
            )
            raise ValueError(
                f"Unknown label {label!r} in {where(i)}. Expected one of "
                f"{class_names}{hint}."
            )
    return "names"  # unreachable


def load_manifest(
    folder,
    class_names=None,
    manifest="manifest.csv",
    sample_rate=16000,
    max_samples=None,
    image_size=None,
    image_mode="RGB",
):
    """Loads a folder described by `manifest.csv` into a `MultimodalDataset`.

    Args:
        folder: the folder holding the manifest and the files it names.
        class_names: optional list of allowed labels, in class-index order;
            a row with another label raises. The `label` column holds class
            names, or class indices (`0`, `1`, ...) when no label is a class
            name, every label is an integer below `len(class_names)` and no
            class name is itself an integer (digit labels `0`..`9` for the
            classes `zero`..`nine`). Defaults to the distinct labels of the
            manifest, sorted (numerically when all are integers).
        manifest: the manifest file name inside `folder`.
        sample_rate: audio sample rate after resampling (Hz).
        max_samples: audio crop / pad length; `None` pads to the longest clip.
        image_size: `(height, width)` every image is resized to; `None`
            requires all images to share one size.
        image_mode: Pillow mode the images are converted to (`"RGB"`, `"L"`).

    Returns:
        A `MultimodalDataset` with `inputs` among `"audio"` (float32
        `(N, samples)`), `"image"` (float32 `(N, H, W, C)` in [0, 1]) and
        `"text"` (object array of str), int32 `labels`, `class_names`, and
        `metadata` arrays `row` (1-based data row), `audio_path` /
        `image_path`, `audio_length`, `cropped` and any extra columns.

    Raises:
        FileNotFoundError: the folder, the manifest or a listed file is
            missing (the message names the file and the manifest line).
        ValueError: no `label` column, no modality column, an empty cell, an
            unknown label (with `class_names`), an unreadable file, or
            images of different sizes without `image_size`.

    Example:

    >>> ds = load_manifest("my_data", class_names=["no", "yes"])  # doctest: +SKIP
    >>> ds.inputs["audio"].shape, ds.labels[:3]  # doctest: +SKIP
    ((120, 16000), array([1, 0, 1], dtype=int32))
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Manifest folder not found: '{folder}'")
    manifest_path = os.path.join(folder, manifest)
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(
            f"Manifest file not found: '{manifest_path}'. Expected a CSV with a "
            f"'label' column and one or more of {list(MODALITY_COLUMNS)}."
        )
    try:
        with open(manifest_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            raw_rows = [
                {
                    (k or "").strip(): (v or "").strip()
                    for k, v in row.items()
                    if k is not None
                }
                for row in reader
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"Cannot read manifest '{manifest_path}': {e}") from e
    if "label" not in columns:
        raise ValueError(
            f"Manifest '{manifest_path}' has no 'label' column. Found columns: {columns}."
        )
    modalities = [c for c in MODALITY_COLUMNS if c in columns]
    if not modalities:
        raise ValueError(
            f"Manifest '{manifest_path}' has no modality column: expected one or "
            f"more of {list(MODALITY_COLUMNS)}. Found columns: {columns}."
        )
    if not raw_rows:
        raise ValueError(f"Manifest '{manifest_path}' has a header but no data rows.")
    extra_columns = [c for c in columns if c not in ("label", *modalities) and c]

    def where(i):
        return f"row {i + 1}, line {i + 2} of '{manifest_path}'"

    for i, row in enumerate(raw_rows):
        for column in ("label", *modalities):
            if not row.get(column):
                raise ValueError(f"Empty '{column}' cell in {where(i)}.")
    labels_text = [row["label"] for row in raw_rows]
    label_mode = "names"
    if class_names is None:
        distinct = set(labels_text)
        if all(_is_index(lab) for lab in distinct):
            class_names = sorted(distinct, key=int)  # 2 before 10
        else:
            class_names = sorted(distinct)
    else:
        class_names = [str(c) for c in class_names]
        label_mode = _label_mode(labels_text, class_names, where)
    if label_mode == "indices":
        labels = np.array([int(lab) for lab in labels_text], "int32")
    else:
        labels = np.array([class_names.index(lab) for lab in labels_text], "int32")

    def resolve(i, column):
        path = os.path.join(folder, raw_rows[i][column])
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{column.capitalize()} file not found: '{path}' ({where(i)})."
            )
        return path

    n = len(raw_rows)
    inputs, metadata = {}, {"row": np.arange(1, n + 1, dtype="int32")}
    if "audio" in modalities:
        waves, lengths, cropped, paths = [], np.zeros(n, "int64"), np.zeros(n, bool), []
        for i in range(n):
            path = resolve(i, "audio")
            try:
                wave, info = load_audio(
                    path, sample_rate=sample_rate, max_samples=max_samples
                )
            except ValueError as e:
                raise ValueError(f"{e} ({where(i)})") from e
            waves.append(wave)
            lengths[i], cropped[i] = info.num_samples, info.cropped
            paths.append(path)
        length = max_samples or max(len(w) for w in waves)
        audio = np.zeros((n, length), "float32")
        for i, wave in enumerate(waves):
            audio[i, : len(wave)] = wave
        inputs["audio"] = audio
        metadata.update(
            audio_path=np.array(paths), audio_length=lengths, cropped=cropped
        )
    if "image" in modalities:
        images, paths = [], []
        for i in range(n):
            path = resolve(i, "image")
            image = _load_image(path, where(i), image_size, image_mode)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"Image '{path}' ({where(i)}) has shape {image.shape} but "
                    f"'{paths[0]}' has {images[0].shape}. Pass image_size=(height, "
                    "width) to resize all images."
                )
            images.append(image)
            paths.append(path)
        inputs["image"] = np.stack(images)
        metadata["image_path"] = np.array(paths)
    if "text" in modalities:
        inputs["text"] = np.array([row["text"] for row in raw_rows], dtype=object)
    for column in extra_columns:
        key = column if column not in metadata else f"column_{column}"
        metadata[key] = np.array([row.get(column, "") for row in raw_rows])
    return MultimodalDataset(
        inputs=inputs,
        labels=labels,
        class_names=tuple(class_names),
        metadata=metadata,
        info={
            "dataset": "manifest",
            "manifest": manifest_path,
            "modalities": modalities,
            "sample_rate": sample_rate if "audio" in modalities else None,
            "label_mode": label_mode,
        },
    )
