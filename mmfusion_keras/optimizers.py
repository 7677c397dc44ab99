"""Optimizers that give a model's memory module its own learning rate."""

import re

import keras

from mmfusion_keras.inspection import find_memory_layers


def memory_module_optimizer(
    model,
    learning_rate=0.01,
    memory_learning_rate=0.001,
    momentum=0.0,
    layer_names=None,
):
    """SGD with one learning rate for the memory module, another elsewhere.

    Dual Memory Fusion trains the network with SGD at 0.01 and the memory
    module at 0.001 (Priyasad et al. 2023, section 3.1). This builds a
    `keras.optimizers.MultiOptimizer` whose `OptimizerMap` routes every
    variable under a memory fusion layer (by variable path,
    `"<layer path>/.*"`) to `SGD(memory_learning_rate)` and all other
    variables to `SGD(learning_rate)`. It is saved in `.keras` files with
    the model and works on every backend.

    Args:
        model: a built model containing the memory fusion layer(s).
        learning_rate: learning rate of everything else. Default 0.01.
        memory_learning_rate: learning rate of the memory module. Default
            0.001.
        momentum: SGD momentum of both optimizers. Default 0 (the paper
            does not give one).
        layer_names: names of the layers to treat as the memory module;
            default: every layer with `memories` and `inspect()` (e.g.
            `DualMemoryFusion`, `MemoryBasedAttentiveFusion`).

    Returns:
        A `keras.optimizers.MultiOptimizer`.

    Example:

    >>> import keras
    >>> from mmfusion_keras.layers import DualMemoryFusion
    >>> from mmfusion_keras.optimizers import memory_module_optimizer
    >>> a, t = keras.Input((8,)), keras.Input((8,))
    >>> fused = DualMemoryFusion(memory_slots=4, output_dim=16, writer_heads=2,
    ...     name="fusion")([a, t])
    >>> model = keras.Model([a, t], keras.layers.Dense(2)(fused))
    >>> optimizer = memory_module_optimizer(model)
    >>> [(o.name, round(float(o.learning_rate), 6)) for o in optimizer.optimizers]
    [('memory_sgd', 0.001), ('sgd', 0.01)]
    """
    if layer_names is None:
        layers = find_memory_layers(model)
    else:
        by_name = {
            layer.name: layer
            for layer in model._flatten_layers(include_self=False, recursive=True)
        }
        missing = [name for name in layer_names if name not in by_name]
        if missing:
            raise ValueError(
                f"Model {model.name!r} has no layer named {missing}. Received: "
                f"layer_names={list(layer_names)}"
            )
        layers = [by_name[name] for name in layer_names]
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no memory fusion layer (a layer with "
            "`memories` and `inspect()`, e.g. DualMemoryFusion); pass "
            "`layer_names` to choose the layers that get "
            "`memory_learning_rate`."
        )
    optimizer_map = keras.optimizers.OptimizerMap(
        default_optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum)
    )
    paths = [re.escape(layer.path) for layer in layers]
    pattern = (paths[0] if len(paths) == 1 else "(" + "|".join(paths) + ")") + "/.*"
    optimizer_map[pattern] = keras.optimizers.SGD(
        memory_learning_rate, momentum=momentum, name="memory_sgd"
    )
    return keras.optimizers.MultiOptimizer(optimizer_map, name="memory_module_sgd")
