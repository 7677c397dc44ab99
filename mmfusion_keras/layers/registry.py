"""Fusion layers by short name, for model builders, the CLI and benchmarks."""

import importlib

import keras

# short name -> (module, class). Late fusion is not here: it fuses class
# scores, not features, and model builders handle it separately.
_FUSION_LAYERS = {
    "concat": ("mmfusion_keras.layers.concatenate_fusion", "ConcatenateFusion"),
    "sum": ("mmfusion_keras.layers.sum_fusion", "SumFusion"),
    "product": ("mmfusion_keras.layers.product_fusion", "ProductFusion"),
    "gmu": ("mmfusion_keras.layers.gated_multimodal_unit", "GatedMultimodalUnit"),
    "tensor": ("mmfusion_keras.layers.tensor_fusion", "TensorFusion"),
    "low_rank_tensor": (
        "mmfusion_keras.layers.low_rank_tensor_fusion",
        "LowRankTensorFusion",
    ),
    "compact_bilinear": (
        "mmfusion_keras.layers.compact_bilinear_pooling",
        "CompactBilinearPooling",
    ),
    "mbaf": (
        "mmfusion_keras.layers.memory_based_attentive_fusion",
        "MemoryBasedAttentiveFusion",
    ),
    "dual_memory": ("mmfusion_keras.layers.dual_memory_fusion", "DualMemoryFusion"),
}


def fusion_names():
    """The short names accepted by `get_fusion_layer`."""
    return sorted(_FUSION_LAYERS)


def get_fusion_layer(identifier, **kwargs):
    """Returns a fusion layer from a short name, a class, or an instance.

    Args:
        identifier: a short name (see `fusion_names()`), a fusion layer
            class, or a layer instance (returned as is; `kwargs` must then
            be empty).
        **kwargs: constructor arguments.

    Example:

    >>> from mmfusion_keras.layers.registry import get_fusion_layer
    >>> layer = get_fusion_layer("concat", name="fusion")
    >>> layer.__class__.__name__
    'ConcatenateFusion'
    """
    if isinstance(identifier, keras.layers.Layer):
        if kwargs:
            raise ValueError(
                "Keyword arguments cannot be applied to a fusion layer "
                f"instance. Received: identifier={identifier}, kwargs={kwargs}"
            )
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, keras.layers.Layer):
        return identifier(**kwargs)
    if identifier not in _FUSION_LAYERS:
        raise ValueError(
            f"Unknown fusion {identifier!r}. Expected one of {fusion_names()}, "
            "a keras.layers.Layer subclass, or a layer instance."
        )
    module, cls = _FUSION_LAYERS[identifier]
    return getattr(importlib.import_module(module), cls)(**kwargs)
