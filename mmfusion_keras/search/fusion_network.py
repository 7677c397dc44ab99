"""Fusion networks built from an MFAS description (Eq. 1-2).

`build_fusion_head` builds the fusion layers and the classifier on feature
vectors (what the search trains, on cached features);
`build_feature_extractor` exposes the candidate layers of a unimodal
network, globally pooled; `build_fusion_network` joins both into one model
from the raw inputs of `f` and `g`.
"""

import keras

from mmfusion_keras.search.search_space import DEFAULT_ACTIVATIONS


def x_name(m):
    """Input name of feature `m` (1-based) of the first modality."""
    return f"x{m}"


def y_name(n):
    """Input name of feature `n` (1-based) of the second modality."""
    return f"y{n}"


def fusion_layer_name(level):
    """Name of fusion layer `level` (1-based) in a fusion head."""
    return f"fusion_{level}"


def _check_widths(widths, name):
    widths = tuple(widths)
    if not widths or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
        raise ValueError(
            f"build_fusion_head expected `{name}` to be a non-empty list of "
            f"positive feature widths. Received: {name}={widths!r}"
        )
    return widths


def build_fusion_head(
    description,
    x_widths,
    y_widths,
    num_classes,
    units=16,
    activations=DEFAULT_ACTIVATIONS,
    name="fusion_head",
):
    """The fusion layers of a description plus a softmax classifier.

    Layer `l` computes `h_l = sigma_p(W_l [x_m; y_n; h_{l-1}])` (Eq. 1; the
    first layer has no `h_0`, Eq. 2) with a bias, as a `Dense` on the
    concatenation; the classifier is a `Dense` softmax on the last `h_L`.

    Args:
        description: list of `(m, n, p)` triplets (1-based).
        x_widths: widths of the `M` candidate features of the first
            modality (`x_widths[m - 1]` is the width of `x_m`).
        y_widths: widths of the `N` candidate features of the second one.
        num_classes: classifier outputs.
        units: width of every fusion layer (`W_l` has `units` rows).
        activations: activation names indexed by `p - 1`.
        name: model name.

    Returns:
        A `keras.Model` whose inputs are a dict holding only the features
        the description uses, keyed `"x{m}"` / `"y{n}"`, and whose output
        is `(batch, num_classes)` probabilities. Fusion layers are named
        `"fusion_{l}"`, the classifier `"classifier"`.

    Example:

    >>> head = build_fusion_head([(2, 1, 1), (1, 1, 2)], [4, 6], [3], 10)
    >>> sorted(head.input)
    ['x1', 'x2', 'y1']
    >>> head.get_layer("fusion_2").kernel.shape
    (23, 16)

    Reference:
        Perez-Rua et al., "MFAS: Multimodal Fusion Architecture Search",
        CVPR 2019, Eq. 1-2.
    """
    from mmfusion_keras.search.search_space import SearchSpace

    x_widths = _check_widths(x_widths, "x_widths")
    y_widths = _check_widths(y_widths, "y_widths")
    space = SearchSpace(len(x_widths), len(y_widths), activations, max_layers=10**6)
    description = space.validate(description)
    inputs = {}
    for m, n, _ in description:
        for key, width in ((x_name(m), x_widths[m - 1]), (y_name(n), y_widths[n - 1])):
            if key not in inputs:
                inputs[key] = keras.Input((width,), name=key)
    h = None
    for level, (m, n, p) in enumerate(description, start=1):
        parts = [inputs[x_name(m)], inputs[y_name(n)]]
        if h is not None:
            parts.append(h)  # Eq. 1 (Eq. 2 for the first layer: no h_0)
        z = keras.layers.Concatenate(name=f"concat_{level}")(parts)
        h = keras.layers.Dense(
            units, activation=activations[p - 1], name=fusion_layer_name(level)
        )(z)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(
        h
    )
    ordered = {k: inputs[k] for k in sorted(inputs)}
    return keras.Model(ordered, outputs, name=name)


def _pool(tensor, name):
    rank = len(tensor.shape)
    if rank == 2:
        return tensor
    pooling = {
        3: keras.layers.GlobalAveragePooling1D,
        4: keras.layers.GlobalAveragePooling2D,
        5: keras.layers.GlobalAveragePooling3D,
    }
    if rank not in pooling:
        raise ValueError(
            f"build_feature_extractor can pool outputs of rank 2 to 5 (batch "
            f"first). Received an output of shape {tuple(tensor.shape)} from {name!r}."
        )
    return pooling[rank](name=f"{name}_pool")(tensor)


def build_feature_extractor(model, layer_names, name=None):
    """A model returning the named layers' outputs, globally pooled.

    Convolutional outputs are averaged over their spatial (or temporal)
    axes, leaving one value per channel; vector outputs are kept as they
    are ("handling arbitrary tensor dimensions", section 3.2).

    Args:
        model: a functional Keras model (a unimodal network).
        layer_names: names of its candidate feature layers, in order.
        name: name of the returned model.

    Returns:
        A `keras.Model` with the inputs of `model` and a list of
        `(batch, width)` outputs, one per name (Keras returns a single
        output unwrapped).

    Example:

    >>> import keras
    >>> x = keras.Input((8, 8, 1))
    >>> c = keras.layers.Conv2D(4, 3, name="c1")(x)
    >>> net = keras.Model(x, keras.layers.Dense(2)(keras.layers.Flatten()(c)))
    >>> build_feature_extractor(net, ["c1"]).output_shape
    (None, 4)
    """
    outputs = []
    for layer_name in layer_names:
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ValueError(
                f"build_feature_extractor: model {model.name!r} has no layer "
                f"{layer_name!r}. Its layers are {[lyr.name for lyr in model.layers]}."
            ) from None
        outputs.append(_pool(layer.output, layer_name))
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_features")


def build_fusion_network(
    description,
    f,
    g,
    f_layers,
    g_layers,
    num_classes,
    units=16,
    activations=DEFAULT_ACTIVATIONS,
    multitask=False,
    head=None,
    feature_stats=None,
    name="mfas_fusion_network",
):
    """The end-to-end fusion network of a description on `f` and `g`.

    Args:
        description: list of `(m, n, p)` triplets.
        f: unimodal model of the first modality (its candidate features are
            `x_1..x_M`).
        g: unimodal model of the second modality (`y_1..y_N`).
        f_layers: names of the `M` candidate layers of `f`, in order.
        g_layers: names of the `N` candidate layers of `g`.
        num_classes: classes of the fused classifier.
        units: fusion-layer width.
        activations: activation names indexed by `p - 1`.
        multitask: if True, the model also returns the outputs of `f` and
            `g` (their own softmax heads), for the multitask loss of the
            paper's final fine-tuning ("Loss function", section 3.2).
        head: an existing fusion head (e.g. trained on cached features) to
            use instead of building a new one.
        feature_stats: optional `{"x1": (mean, variance), ...}`: each pooled
            feature is standardised with these fixed statistics (a
            non-trainable `Normalization` layer), as the cached features
            the head was trained on were.
        name: model name.

    Returns:
        A `keras.Model` on the inputs of `f` and `g`: the fused
        probabilities, or a dict `{"fusion", "x", "y"}` when `multitask`.
        `f` and `g` are shared, not copied: set `f.trainable = False` to
        freeze them.

    Example:

    >>> import keras
    >>> def net(shape, n):
    ...     x = keras.Input(shape, name=f"in{n}")
    ...     c = keras.layers.Conv1D(3, 2, name=f"c{n}")(x)
    ...     p = keras.layers.GlobalAveragePooling1D()(c)
    ...     return keras.Model(x, keras.layers.Dense(2, "softmax")(p))
    >>> model = build_fusion_network([(1, 1, 1)], net((5, 2), 1), net((4, 3), 2),
    ...                              ["c1"], ["c2"], num_classes=2)
    >>> model.output_shape
    (None, 2)

    Reference:
        Perez-Rua et al., "MFAS: Multimodal Fusion Architecture Search",
        CVPR 2019, Eq. 1-2 and section 3.2.
    """
    fx = build_feature_extractor(f, f_layers)
    gy = build_feature_extractor(g, g_layers)
    x_widths = [int(t.shape[-1]) for t in fx.outputs]
    y_widths = [int(t.shape[-1]) for t in gy.outputs]
    if head is None:
        head = build_fusion_head(
            description, x_widths, y_widths, num_classes, units, activations
        )
    x_inputs = [keras.Input(t.shape[1:], name=t.name.split(":")[0]) for t in f.inputs]
    y_inputs = [keras.Input(t.shape[1:], name=t.name.split(":")[0]) for t in g.inputs]
    xs = fx(x_inputs[0] if len(x_inputs) == 1 else x_inputs)
    ys = gy(y_inputs[0] if len(y_inputs) == 1 else y_inputs)
    xs = xs if isinstance(xs, (list, tuple)) else [xs]
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    features = {x_name(i + 1): t for i, t in enumerate(xs)}
    features.update({y_name(i + 1): t for i, t in enumerate(ys)})
    for key, (mean, variance) in (feature_stats or {}).items():
        if key in features:
            features[key] = keras.layers.Normalization(
                mean=mean, variance=variance, name=f"{key}_standardize"
            )(features[key])
    fused = head({k: features[k] for k in head.input})
    inputs = x_inputs + y_inputs
    if not multitask:
        return keras.Model(inputs, fused, name=name)
    out_x = f(x_inputs[0] if len(x_inputs) == 1 else x_inputs)
    out_y = g(y_inputs[0] if len(y_inputs) == 1 else y_inputs)
    return keras.Model(inputs, {"fusion": fused, "x": out_x, "y": out_y}, name=name)
