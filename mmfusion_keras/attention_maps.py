"""Attention weights of a model's attention layers, for inspection and plots.

`attention_maps(model, inputs)` returns, for every `CrossModalAttention`
and `DeltaSelfAttention` layer of a functional model, the attention weights
the layer computes on those inputs. It walks the model's layer graph,
finds each attention layer's inbound node (the tensors and keyword
arguments, such as masks, it was called with when the model was built),
computes those tensors with one sub-model from the model's inputs
(`predict_on_batch`, with the Keras masks the tensors carried), and calls
the layer on their values with `return_attention_scores=True` and
`training=False`: the same weights (and the same masks) as in the model's
forward pass, in inference mode (no dropout), on every backend.

Attention layers inside a `CrossModalTransformerBlock` (MulT's blocks) are
reached through the block: the block's inbound tensors are normalized with
the block's own layer norms, as its `call` does (Eq. 6), and its inner
`CrossModalAttention` is called on them.
"""

import keras
import numpy as np

from mmfusion_keras.layers.cross_modal_attention import CrossModalAttention
from mmfusion_keras.layers.cross_modal_transformer_block import (
    CrossModalTransformerBlock,
)
from mmfusion_keras.layers.delta_self_attention import DeltaSelfAttention

ATTENTION_LAYERS = (CrossModalAttention, DeltaSelfAttention)


def find_attention_layers(model):
    """The model's attention layers, in graph order.

    Returns:
        A list of `(name, layer, owner)`: `owner` is the top-level layer of
        `model` that holds it (the layer itself, or its
        `CrossModalTransformerBlock`); `name` is the layer's name, or
        `"<block>/<attention>"` inside a block.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, ATTENTION_LAYERS):
            found.append((layer.name, layer, layer))
        elif isinstance(layer, CrossModalTransformerBlock):
            found.append(
                (f"{layer.name}/{layer.attention.name}", layer.attention, layer)
            )
    return found


def _inbound_node(model, layer):
    """The node of `layer` that belongs to `model`'s graph."""
    nodes = getattr(model, "_nodes", None)
    for index, node in enumerate(layer._inbound_nodes):
        key = f"{id(layer)}_ib-{index}"
        if nodes is None or key in nodes:
            return node
    raise ValueError(
        f"Layer {layer.name!r} is not called in the model's graph; expected a "
        "layer of this functional model."
    )


class _Probe:
    """What `attention_maps` needs for one model: a model from the inputs to
    every attention layer's inbound tensors (and implicit Keras masks), and
    per layer how to call it on their values."""

    def __init__(self, model):
        self.layers = []  # (name, layer, owner, arguments, implicit masks)
        tensors = {}
        for name, layer, owner in find_attention_layers(model):
            arguments = _inbound_node(model, owner).arguments
            masks = None
            if "mask" not in arguments.kwargs and arguments.args:
                masks = keras.tree.map_structure(
                    lambda t: getattr(t, "_keras_mask", None), arguments.args[0]
                )
                if not any(m is not None for m in keras.tree.flatten(masks)):
                    masks = None
            for t in arguments.keras_tensors:
                tensors[id(t)] = t
            if masks is not None:
                for t in keras.tree.flatten(masks):
                    if t is not None:
                        tensors[id(t)] = t
            self.layers.append((name, layer, owner, arguments, masks))
        self.ids = list(tensors)
        self.feed = None
        if self.layers:
            self.feed = keras.Model(model.inputs, [tensors[i] for i in self.ids])

    def __call__(self, inputs):
        if self.feed is None:
            return {}
        values = self.feed.predict_on_batch(inputs)
        if not isinstance(values, (list, tuple)):
            values = [values]
        found = dict(zip(self.ids, values))
        maps = {}
        for name, layer, owner, arguments, masks in self.layers:
            args, kwargs = arguments.fill_in(found)
            kwargs.pop("training", None)
            if masks is not None:
                kwargs["mask"] = keras.tree.map_structure(
                    lambda t: None if t is None else found[id(t)], masks
                )
            if owner is not layer:  # CrossModalTransformerBlock([target, source])
                target, source = args[0]
                args = ([owner.target_norm(target), owner.source_norm(source)],)
            _, weights = layer(
                *args, training=False, return_attention_scores=True, **kwargs
            )
            maps[name] = np.asarray(keras.ops.convert_to_numpy(weights), "float32")
        return maps


def attention_maps(model, inputs, cache=None):
    """Attention weights of every attention layer of `model` on `inputs`.

    Args:
        model: a functional Keras model.
        inputs: the model's inputs, as for `model.predict_on_batch` (a list
            in the order of `model.inputs`, or a dict by input name).
        cache: optional dict; the attention model built for `model` is kept
            there (keyed by `id(model)`) so repeated calls reuse it and its
            compiled predict function.

    Returns:
        A dict `{layer name: float32 array (batch, heads, T_query, T_key)}`
        in graph order (`"<block>/<attention>"` for attention inside a
        `CrossModalTransformerBlock`); empty when the model has no
        attention layer. `CrossModalAttention` weights have the target
        (query) steps on axis 2 and the source (key) steps on axis 3;
        `DeltaSelfAttention` weights have query and key steps of one
        sequence.

    Example:

    >>> import keras, numpy as np
    >>> from mmfusion_keras.attention_maps import attention_maps
    >>> from mmfusion_keras.layers import CrossModalAttention
    >>> words = keras.Input((5, 8)); frames = keras.Input((7, 6))
    >>> y = CrossModalAttention(num_heads=2, name="words_to_audio")([words, frames])
    >>> model = keras.Model([words, frames], keras.layers.GlobalAveragePooling1D()(y))
    >>> maps = attention_maps(model, [np.ones((1, 5, 8)), np.ones((1, 7, 6))])
    >>> {k: v.shape for k, v in maps.items()}
    {'words_to_audio': (1, 2, 5, 7)}
    """
    if not hasattr(model, "_nodes") or not getattr(model, "inputs", None):
        raise ValueError(
            "attention_maps expects a functional Keras model (built from "
            f"keras.Input). Received: {type(model).__name__}"
        )
    cache = {} if cache is None else cache
    key = id(model)
    if key not in cache:
        cache[key] = _Probe(model)
    if isinstance(inputs, dict):
        inputs = [inputs[t.name.split(":")[0]] for t in model.inputs]
    return cache[key](inputs)
