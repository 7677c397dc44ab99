"""Look inside the memory layers of a trained model, without changing it."""

import keras


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
