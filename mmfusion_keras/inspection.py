"""Look inside the memory layers of a trained model, without changing it."""

import keras
import numpy as np


def find_memory_layers(model):
    """The layers of `model` (searched recursively) that have `inspect()`."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if callable(getattr(layer, "inspect", None)) and hasattr(layer, "memories"):
            found.append(layer)
    return found


def inspect_fusion(model, inputs, layer_name=None):
    """Read weights, attention and memory of a model's memory fusion layer.

    Computes the fusion layer's inputs for `inputs` with a sub-model of
    `model` (the encoders), then calls the layer's `inspect()`: inference
    mode, the memory is not written, nothing in the model changes.

    Args:
        model: a functional model containing a memory fusion layer (e.g.
            `MemoryBasedAttentiveFusion`).
        inputs: the model's inputs (array, list or dict, as for `predict`).
        layer_name: name of the fusion layer; needed only when the model
            has several.

    Returns:
        The dict of the layer's `inspect()` (see
        `MemoryBasedAttentiveFusion.inspect`), plus `"layer"`: its name.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.models import build_fusion_classifier
    >>> from mmfusion_keras.inspection import inspect_fusion
    >>> model = build_fusion_classifier({"a": 4, "b": 3}, 2, "mbaf",
    ...     fusion_kwargs={"memory_slots": 5})
    >>> report = inspect_fusion(model, {"a": np.ones((1, 4)), "b": np.ones((1, 3))})
    >>> report["read_weights"].shape
    (1, 5)
    """
    layers = find_memory_layers(model)
    if layer_name is not None:
        layers = [layer for layer in layers if layer.name == layer_name]
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no memory fusion layer"
            + (f" named {layer_name!r}" if layer_name else "")
            + ". Expected a layer with `inspect()`, e.g. MemoryBasedAttentiveFusion."
        )
    if len(layers) > 1:
        raise ValueError(
            f"Model {model.name!r} has several memory fusion layers "
            f"{[layer.name for layer in layers]}; pass `layer_name`."
        )
    layer = layers[0]
    encoder = keras.Model(model.inputs, layer.input)
    fusion_inputs = encoder.predict(inputs, verbose=0)
    report = layer.inspect(list(fusion_inputs))
    report["layer"] = layer.name
    return report


def memory_health(memory, read_weights=None, threshold=0.99):
    """How much of a memory is alive: distinct slots, rank, read entropy, norms.

    One definition used everywhere (the training callback, `mmfusion train`'s
    model card, the demo app, the experiments), so that "the memory
    collapsed" means the same thing in every report.

    * **distinct slots**: slots with no *other* slot at cosine similarity
      above `threshold` (0.99). All slots identical gives 0; all orthogonal
      gives `k`; half of the slots duplicated (each duplicate pair at cosine
      1) gives `k / 2` fewer. A zero slot (norm 0) has cosine 0 to everything.
    * **effective rank** (Roy & Vetterli 2007): `exp(H(p))` with `p` the
      singular values of the memory normalized to sum to 1; 1 for a memory
      of one repeated vector, `min(k, l)` for orthogonal slots of equal norm.
    * **read entropy** (if `read_weights` is given): the mean over inputs of
      `H(z) / log(k)`, 1 for uniform reads, 0 for one-hot reads.
    * **slots read** and **top slot share** (if `read_weights` is given):
      how many slots are the largest read weight of at least one input,
      and the fraction of inputs whose largest read weight is on the most
      common such slot. Distinct slots and sharp reads do not make the
      read depend on the input: a memory whose every input reads the same
      slot has read entropy 0 but `slots_read` 1 and top slot share 1.
    * **inputs**: how many rows of `read_weights` the read figures are
      measured on (None without `read_weights`). With one input, "slots
      read" is 1 by construction; `describe_memory_health` leaves the
      read figures out below `MIN_READ_INPUTS` inputs.
    * **slot norms**: the L2 norm of each slot.

    Args:
        memory: array `(k, l)`, one memory (slots in rows).
        read_weights: optional array `(batch, k)`, read weights over the
            slots for some inputs (rows sum to 1).
        threshold: cosine similarity above which two slots count as the
            same.

    Returns:
        dict with `slots` (k), `distinct_slots`, `distinct_fraction`,
        `effective_rank`, `read_entropy`, `slots_read`, `top_slot_share`
        (these three None without `read_weights`),
        `slot_norms` (array `(k,)`), `norm_min`, `norm_mean`, `norm_max`,
        and `finite` (False if the memory holds NaN or inf; the other
        figures are then computed on the finite slots only).

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.inspection import memory_health
    >>> memory_health(np.ones((4, 3)))["distinct_slots"]
    0
    >>> memory_health(np.eye(4))["distinct_slots"]
    4
    """
    memory = np.asarray(memory, dtype="float64")
    if memory.ndim != 2:
        raise ValueError(
            "memory_health expects one memory of shape (slots, width). "
            f"Received: shape={memory.shape}"
        )
    if not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"Received an invalid value for argument `threshold`, expected a "
            f"number in (0, 1]. Received: threshold={threshold}"
        )
    k = memory.shape[0]
    finite_rows = np.all(np.isfinite(memory), axis=1)
    finite = bool(finite_rows.all())
    m = memory[finite_rows]
    norms = np.full((k,), np.nan)
    norms[finite_rows] = np.linalg.norm(m, axis=1)
    if len(m):
        safe = np.where(norms[finite_rows] > 0, norms[finite_rows], 1.0)
        unit = m / safe[:, None]
        cosine = unit @ unit.T
        np.fill_diagonal(cosine, -np.inf)
        duplicated = (
            (cosine > threshold).any(axis=1) if len(m) > 1 else np.zeros(1, bool)
        )
        distinct = int(np.sum(~duplicated))
        singular = np.linalg.svd(m, compute_uv=False)
        total = singular.sum()
        if total > 0:
            p = singular / total
            p = p[p > 0]
            effective_rank = float(np.exp(-np.sum(p * np.log(p))))
        else:
            effective_rank = 0.0
    else:
        distinct, effective_rank = 0, 0.0
    entropy = slots_read = top_share = None
    if read_weights is not None:
        z = np.asarray(read_weights, dtype="float64")
        if z.ndim != 2 or z.shape[-1] != k:
            raise ValueError(
                f"memory_health expects read weights of shape (batch, {k}) for "
                f"a memory of {k} slots. Received: shape={z.shape}"
            )
        if len(z):
            counts = np.bincount(np.argmax(z, axis=-1), minlength=k)
            slots_read = int(np.sum(counts > 0))
            top_share = float(counts.max() / len(z))
        if k > 1:
            z = np.clip(z, 1e-12, 1.0)
            entropy = float(np.mean(-np.sum(z * np.log(z), axis=-1)) / np.log(k))
        else:
            entropy = 0.0
    finite_norms = norms[np.isfinite(norms)]
    return {
        "slots": int(k),
        "distinct_slots": distinct,
        "distinct_fraction": distinct / k if k else 0.0,
        "effective_rank": effective_rank,
        "read_entropy": entropy,
        "slots_read": slots_read,
        "top_slot_share": top_share,
        "inputs": None if read_weights is None else int(len(z)),
        "slot_norms": norms,
        "norm_min": float(finite_norms.min()) if finite_norms.size else float("nan"),
        "norm_mean": float(finite_norms.mean()) if finite_norms.size else float("nan"),
        "norm_max": float(finite_norms.max()) if finite_norms.size else float("nan"),
        "finite": finite,
    }


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def model_memory_health(model, inputs=None, threshold=0.99, encoders=None):
    """`memory_health` of every memory of every memory layer of `model`.

    Args:
        model: a model containing layers with `inspect()` and `memories`
            (`MemoryBasedAttentiveFusion`, `DualMemoryFusion`).
        inputs: optional model inputs (as for `predict`); with them the
            read entropy is measured on these inputs (inference mode, the
            memory is not written).
        threshold: see `memory_health`.
        encoders: optional dict, a cache of the sub-models that compute
            each memory layer's inputs (keyed by layer name). Pass the same
            dict on repeated calls (e.g. once per epoch) so that the
            sub-model, and its compiled predict function, is built once.

    Returns:
        A list with one dict per memory: the `memory_health` figures plus
        `layer` (the layer's name), `memory` (index of the memory in the
        layer's `memories`) and `name` (`"<layer>"` or
        `"<layer>/<index>"` when the layer has several memories).
    """
    reports = []
    for layer in find_memory_layers(model):
        memories = [keras.ops.convert_to_numpy(m) for m in layer.memories]
        reads = [None] * len(memories)
        if inputs is not None:
            cache = {} if encoders is None else encoders
            if layer.name not in cache:
                cache[layer.name] = keras.Model(model.inputs, layer.input)
            encoder = cache[layer.name]
            fusion_inputs = encoder.predict(inputs, verbose=0)
            report = layer.inspect(list(fusion_inputs))
            reads = _as_list(report["read_weights"])
            # MBAF's per-modality memories: one read per memory; a fused
            # memory: one read for its one memory.
            if len(reads) != len(memories):
                reads = [None] * len(memories)
        for j, (memory, read) in enumerate(zip(memories, reads)):
            health = memory_health(memory, read, threshold=threshold)
            health["layer"] = layer.name
            health["memory"] = j
            health["name"] = layer.name if len(memories) == 1 else f"{layer.name}/{j}"
            reports.append(health)
    return reports


def memory_health_summary(health, digits=4):
    """A JSON-serializable copy of a `memory_health` dict, for model cards.

    Keeps every scalar figure (and `name`, `layer`, `memory` when present),
    rounds floats to `digits`, replaces NaN by None and the per-slot
    `slot_norms` array by its summary (`norm_min`, `norm_mean`,
    `norm_max`, already in the dict).
    """

    def clean(value):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            return round(value, digits) if np.isfinite(value) else None
        return value

    return {key: clean(value) for key, value in health.items() if key != "slot_norms"}


# Read figures (read entropy, slots read, top slot share) are figures of a
# batch. On one input they say nothing about the memory (one input reads one
# slot by construction; its entropy is that one read's): below
# `MIN_READ_INPUTS` inputs `describe_memory_health` leaves them out, and
# below `MIN_VERDICT_INPUTS` no verdict rests on them.
MIN_READ_INPUTS = 2
MIN_VERDICT_INPUTS = 10


def describe_memory_health(health):
    """One line for a `memory_health` dict, with a warning on collapse.

    Example: ``"fusion: 29 of 30 slots identical to another slot (1
    distinct), effective rank 1.3, read entropy 1.00 of uniform:
    COLLAPSED"``.

    The read figures need many inputs. When `health["inputs"]` says they
    were measured on fewer than `MIN_READ_INPUTS` (one input), they are left
    out; on fewer than `MIN_VERDICT_INPUTS`, the verdict ("COLLAPSED",
    "READS ONE SLOT") rests on the memory alone (its distinct slots). Dicts
    without `inputs` (model cards written before it existed) are described
    as before.
    """
    name = health.get("name", "memory")
    k, distinct = health["slots"], health["distinct_slots"]
    inputs = health.get("inputs")
    reads = {"read_entropy": None, "slots_read": None, "top_slot_share": None}
    if inputs is not None and inputs < MIN_READ_INPUTS:
        health = {**health, **reads}
    text = f"{name}: {distinct} of {k} slots distinct"
    if distinct < k:
        text += f" ({k - distinct} identical to another slot)"
    text += f", effective rank {health['effective_rank']:.1f}"
    if health.get("read_entropy") is not None:
        text += f", read entropy {health['read_entropy']:.2f} of uniform"
    if health.get("slots_read") is not None:
        text += (
            f", {health['slots_read']} slots read (top slot: "
            f"{100 * health['top_slot_share']:.0f}% of inputs)"
        )
    if inputs is not None and inputs < MIN_VERDICT_INPUTS:
        health = {**health, **reads}
    if not health.get("finite", True):
        text += ": NOT FINITE"
    elif memory_is_collapsed(health):
        text += ": COLLAPSED" if distinct <= 1 else ": PARTLY COLLAPSED"
    elif (health.get("top_slot_share") or 0.0) >= 0.9 and k > 1:
        text += ": READS ONE SLOT"
    return text


def memory_is_collapsed(health, min_distinct_fraction=0.8, max_read_entropy=0.8):
    """True when a memory fails the library's health bar.

    The bar (issue #13's acceptance): at least 80% of the slots distinct,
    and, when read weights were measured, a mean read entropy of at most
    0.8 of uniform.
    """
    if health["distinct_fraction"] < min_distinct_fraction:
        return True
    entropy = health.get("read_entropy")
    return entropy is not None and entropy > max_read_entropy
