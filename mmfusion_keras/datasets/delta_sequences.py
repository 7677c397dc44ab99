"""A generated three-modality sequence task where only changes over time matter.

Nothing is bundled or downloaded: `load_delta_sequences` draws the data
from a seed in a few milliseconds.
"""

import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset

_SPLITS = {"train": 0, "validation": 1, "test": 2}
_DEFAULT_SIZES = {"train": 1024, "validation": 256, "test": 256}
MODALITIES = ("text", "vision", "audio")
CLASS_NAMES = ("text down, vision down", "text down, vision up",
               "text up, vision down", "text up, vision up")  # fmt: skip


def _positive_int(value):
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and value > 0
    )


def load_delta_sequences(
    split="train",
    aligned=False,
    num_examples=None,
    seed=0,
    max_lengths=(20, 30, 16),
    dims=(8, 6, 5),
    min_length_fraction=0.6,
    baseline_scale=3.0,
    noise=1.0,
):
    """Generates the delta-sequence task: 4 classes read from changes over time.

    Three modalities `"text"`, `"vision"`, `"audio"` (stand-ins for CMU-MOSEI's
    language, visual and acoustic features) are sequences of feature vectors.
    Each example has two hidden signs, `a` and `b` (each -1 or +1), and the
    label is `2 * (a > 0) + (b > 0)` (4 balanced classes, see `CLASS_NAMES`):

    * text: a **step** of sign `a` along a fixed feature direction `u_T`,
      at a random time in the middle half of the sequence;
    * vision: a **ramp** (a trend over a random window) of sign `b` along
      `u_V`;
    * audio: a step of sign `a * b` along `u_A` (redundant: any two
      modalities determine the class, one alone gives at most half of it).

    Every example also gets an **idiosyncratic baseline**: a random offset
    per modality and feature, `N(0, baseline_scale^2)`, constant over time
    (with the default 3.0 it is 3 times the unit change), plus white noise
    `N(0, noise^2)` per step (default 1.0: a logistic regression on
    hand-made end-minus-start features reaches about 90% test accuracy). The level of a sequence therefore says little
    about the class; the change within it says everything. This is the
    situation delta attention (Panchal, section 2) is designed for.

    **Lengths and alignment.** Unaligned (`aligned=False`): each modality
    has its own maximum length (`max_lengths`, for text, vision, audio) and
    each example and modality its own real length, uniform in
    `[min_length_fraction * max, max]`; the events are placed independently.
    Aligned (`aligned=True`): all three modalities share the text length
    `max_lengths[0]`, one real length per example, and all events happen at
    the same step. Sequences are zero-padded at the end, with boolean masks.

    The feature directions `u_M` depend on `seed` only, so the splits of one
    seed are one task; each split draws its examples from `(seed, split)`.

    Args:
        split: "train", "validation" or "test".
        aligned: bool, see above. Default False.
        num_examples: int or None; default 1024 (train), 256 (others).
        seed: int, the task seed. Default 0.
        max_lengths: 3 positive ints, the padded lengths of text, vision
            and audio (only the first is used when aligned). Default
            (20, 30, 16).
        dims: 3 positive ints, the feature widths. Default (8, 6, 5).
        min_length_fraction: float in (0, 1], the shortest real length as a
            fraction of the maximum. Default 0.6.
        baseline_scale: float >= 0, std of the per-example offsets.
        noise: float >= 0, std of the per-step noise.

    Returns:
        A `MultimodalDataset`: `inputs` float32 `(N, T_M, d_M)` per modality
        plus boolean `"<name>_mask"` `(N, T_M)` (`True` = real step), int32
        `labels` in 0..3, `class_names`, `metadata` with the real `length_<name>`
        and the signs `sign_a`, `sign_b`, and `info` with the arguments.

    Raises:
        ValueError: an unknown split or an invalid argument.

    Example:

    >>> from mmfusion_keras.datasets import load_delta_sequences
    >>> ds = load_delta_sequences("train", num_examples=8, seed=1)
    >>> ds.inputs["text"].shape, ds.inputs["vision_mask"].shape, ds.num_classes
    ((8, 20, 8), (8, 30), 4)
    """
    if split not in _SPLITS:
        raise ValueError(
            "load_delta_sequences expected `split` in ('train', 'validation', "
            f"'test'). Received: split={split!r}"
        )
    for name, values in (("max_lengths", max_lengths), ("dims", dims)):
        if len(tuple(values)) != 3 or not all(_positive_int(v) for v in values):
            raise ValueError(
                f"load_delta_sequences expected `{name}` to be 3 positive integers "
                f"(text, vision, audio). Received: {name}={values!r}"
            )
    if min(max_lengths) < 4:
        raise ValueError(
            "load_delta_sequences needs sequences of at least 4 steps to place "
            f"a change. Received: max_lengths={max_lengths!r}"
        )
    if num_examples is None:
        num_examples = _DEFAULT_SIZES[split]
    if not _positive_int(num_examples):
        raise ValueError(
            "load_delta_sequences expected a positive integer `num_examples`. "
            f"Received: num_examples={num_examples!r}"
        )
    if not 0.0 < min_length_fraction <= 1.0:
        raise ValueError(
            "load_delta_sequences expected `min_length_fraction` in (0, 1]. "
            f"Received: min_length_fraction={min_length_fraction!r}"
        )
    if baseline_scale < 0 or noise < 0:
        raise ValueError(
            "load_delta_sequences expected non-negative `baseline_scale` and "
            f"`noise`. Received: baseline_scale={baseline_scale}, noise={noise}"
        )

    task_rng = np.random.default_rng([seed, 99])
    directions = []
    for d in dims:
        u = task_rng.standard_normal(d)
        directions.append(u / np.linalg.norm(u))
    rng = np.random.default_rng([seed, _SPLITS[split]])
    n = num_examples
    labels = rng.permutation(np.arange(n) % 4).astype("int32")
    sign_a = np.where(labels >= 2, 1.0, -1.0)
    sign_b = np.where(labels % 2 == 1, 1.0, -1.0)
    signs = (sign_a, sign_b, sign_a * sign_b)
    kinds = ("step", "ramp", "step")

    steps = (max_lengths[0],) * 3 if aligned else tuple(max_lengths)

    def draw_lengths(t_max):
        low = max(4, int(np.ceil(min_length_fraction * t_max)))
        return rng.integers(low, t_max + 1, size=n)

    def draw_events(lengths):
        # Event start in the middle half; a ramp lasts a quarter of the length.
        start = (lengths * rng.uniform(0.25, 0.75, size=n)).astype(int)
        width = np.maximum(2, lengths // 4)
        return start, width

    shared_lengths = draw_lengths(steps[0]) if aligned else None
    shared_events = draw_events(shared_lengths) if aligned else None

    inputs, metadata = {}, {}
    for m, name in enumerate(MODALITIES):
        t_max, d = steps[m], dims[m]
        lengths = shared_lengths if aligned else draw_lengths(t_max)
        start, width = shared_events if aligned else draw_events(lengths)
        t = np.arange(t_max)[None, :]
        if kinds[m] == "step":
            profile = (t >= start[:, None]).astype("float64")
        else:
            profile = np.clip((t - start[:, None]) / width[:, None], 0.0, 1.0)
        change = (signs[m][:, None] * profile)[:, :, None] * directions[m]
        baseline = baseline_scale * rng.standard_normal((n, 1, d))
        x = baseline + change + noise * rng.standard_normal((n, t_max, d))
        mask = t < lengths[:, None]
        inputs[name] = (x * mask[:, :, None]).astype("float32")
        inputs[f"{name}_mask"] = mask
        metadata[f"length_{name}"] = lengths.astype("int32")
    metadata["sign_a"] = sign_a.astype("int8")
    metadata["sign_b"] = sign_b.astype("int8")
    return MultimodalDataset(
        inputs=inputs,
        labels=labels,
        class_names=CLASS_NAMES,
        metadata=metadata,
        info={
            "name": "delta_sequences",
            "split": split,
            "aligned": bool(aligned),
            "seed": seed,
            "max_lengths": steps,
            "dims": tuple(dims),
            "baseline_scale": baseline_scale,
            "noise": noise,
            "modalities": MODALITIES,
        },
    )
