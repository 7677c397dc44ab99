import keras

from mmfusion_keras.layers.registry import get_fusion_layer


def build_fusion_classifier(
    input_dims,
    num_classes,
    fusion="concat",
    fusion_kwargs=None,
    encoder_units=(64,),
    head_units=(64,),
    dropout=0.0,
    name=None,
):
    """A classifier of several vector modalities joined by a fusion layer.

    Each modality goes through its own Dense encoder, the encodings are
    fused, and a Dense head predicts the classes. With `fusion="late"`, every
    modality gets its own head and the class probabilities are averaged
    with `LateFusion`.

    Args:
        input_dims: dict `{modality name: width}`; the model's inputs are
            named after the keys, in this order.
        num_classes: int, number of classes.
        fusion: a fusion name from `mmfusion_keras.layers.registry`
            (e.g. "concat", "mbaf"), `"late"`, a layer class or instance.
        fusion_kwargs: dict of the fusion layer's constructor arguments.
        encoder_units: widths of each modality's Dense encoder (ReLU).
        head_units: widths of the Dense head (ReLU) after fusion.
        dropout: dropout rate after every hidden Dense layer.
        name: model name.

    Returns:
        A functional `keras.Model` with one input per modality and softmax
        outputs; the fusion layer is named `"fusion"`.

    Example:

    >>> from mmfusion_keras.models import build_fusion_classifier
    >>> model = build_fusion_classifier({"left": 32, "right": 32}, 10, "mbaf")
    >>> model.get_layer("fusion").__class__.__name__
    'MemoryBasedAttentiveFusion'
    """
    if not isinstance(input_dims, dict) or len(input_dims) < 2:
        raise ValueError(
            "`input_dims` must be a dict of at least two {modality: width} "
            f"entries. Received: input_dims={input_dims!r}"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "Received an invalid value for argument `num_classes`, expected "
            f"an integer >= 2. Received: num_classes={num_classes!r}"
        )
    fusion_kwargs = dict(fusion_kwargs or {})
    inputs = {m: keras.Input((int(d),), name=m) for m, d in input_dims.items()}

    def dense_stack(x, units, prefix):
        for i, u in enumerate(units):
            x = keras.layers.Dense(u, activation="relu", name=f"{prefix}_dense_{i}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
        return x

    encoded = [dense_stack(x, encoder_units, m) for m, x in inputs.items()]
    if fusion == "late":
        from mmfusion_keras.layers.late_fusion import LateFusion

        scores = [
            keras.layers.Dense(num_classes, activation="softmax", name=f"{m}_scores")(
                dense_stack(x, head_units, f"{m}_head")
            )
            for m, x in zip(inputs, encoded)
        ]
        outputs = LateFusion(name="fusion", **fusion_kwargs)(scores)
    else:
        if isinstance(fusion, keras.layers.Layer):
            layer = get_fusion_layer(fusion, **fusion_kwargs)
        else:
            layer = get_fusion_layer(fusion, name="fusion", **fusion_kwargs)
        fused = layer(encoded)
        hidden = dense_stack(fused, head_units, "head")
        outputs = keras.layers.Dense(
            num_classes, activation="softmax", name="predictions"
        )(hidden)
    return keras.Model(inputs, outputs, name=name or f"{fusion}_classifier")
