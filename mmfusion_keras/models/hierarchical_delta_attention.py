"""The hierarchical delta-attention model (Panchal, Fig. 2) and its training paths."""

import warnings

import keras
from keras import ops

from mmfusion_keras.layers.canonical_correlation_loss import CanonicalCorrelationLoss
from mmfusion_keras.layers.delta_self_attention import DeltaSelfAttention
from mmfusion_keras.models.mosei_heads import add_mosei_head

_HEADS = ("multiclass", "multilabel")


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class FusedSequence(keras.layers.Layer):
    """Joins modality sequences along time, tagging each with a learned embedding.

    A helper of `build_hierarchical_delta_attention_model`: takes
    `[Y_1, ..., Y_n, mask_1, ..., mask_n]` (sequences `(batch, T_i, d)`,
    boolean masks `(batch, T_i)`) and returns the fused sequence
    `(batch, sum T_i, d)`, in which every step of modality `i` gets the
    modality embedding `e_i` added (so the attention over the fused
    sequence knows where a step comes from), and its mask `(batch, sum T_i)`.

    Args:
        **kwargs: Base layer keyword arguments.
    """

    def build(self, input_shape):
        n = len(input_shape) // 2
        self.modality_embeddings = self.add_weight(
            shape=(n, input_shape[0][-1]),
            name="modality_embeddings",
            initializer="zeros",
        )

    def call(self, inputs):
        n = len(inputs) // 2
        sequences, masks = inputs[:n], inputs[n:]
        tagged = [
            s + ops.cast(self.modality_embeddings[i], s.dtype)[None, None, :]
            for i, s in enumerate(sequences)
        ]
        fused = ops.concatenate(tagged, axis=1)
        mask = ops.concatenate([ops.cast(m, "bool") for m in masks], axis=1)
        return fused, mask

    def compute_output_spec(self, inputs):
        n = len(inputs) // 2
        steps = [s.shape[1] for s in inputs[:n]]
        total = None if any(t is None for t in steps) else sum(steps)
        batch, width = inputs[0].shape[0], inputs[0].shape[-1]
        return (
            keras.KerasTensor((batch, total, width), dtype=self.compute_dtype),
            keras.KerasTensor((batch, total), dtype="bool"),
        )


def build_hierarchical_delta_attention_model(
    input_shapes,
    num_classes,
    head="multiclass",
    num_heads=2,
    filters=16,
    output_dim=16,
    reduced_dim=8,
    kernel_size=3,
    delta_window=None,
    delta="relative",
    use_delta=True,
    encoder_kernel_size=3,
    fused_heads=1,
    fused_dim=16,
    cca_weight=0.1,
    cca_top_k=None,
    cca_ridge=1e-3,
    dropout=0.0,
    name="hierarchical_delta_attention",
):
    """The hierarchical delta-attention fusion model for sequence modalities.

    For every modality `M` (Fig. 2c, bottom to top):

    1. multi-head delta self-attention `Y_M = MHDSA(X_M)` (`DeltaSelfAttention`,
       section 4.1, Eq. 9-12), `(batch, T_M, d_o)`;
    2. a DCCA encoder, two Conv1D layers (`d_o -> d_o` with ReLU, then
       `d_o -> d_r`, 'same' padding, kernel `encoder_kernel_size`),
       `E_M (batch, T_M, d_r)` (section 4.2, Fig. 2a). The encodings are
       averaged over their real steps and passed to `CanonicalCorrelationLoss`,
       which adds `-cca_weight * correlation` (summed over the modality
       pairs) to the training loss (Eq. 13);

    then the encodings are joined along time into `Ŷ_Fused (batch, T_L + T_V
    + T_A, d_r)` (each step tagged with a learned modality embedding) and
    attended by one plain multi-head self-attention (Eq. 14-16: a
    `DeltaSelfAttention` with `use_delta=False` and `kernel_size=1`, i.e. a
    position-wise projection before Q, K, V). The output `Z_Fused` is
    averaged over its real steps and, with the skip connections, goes to the
    classification head (Eq. 17).

    **Readings of the paper.** (a) The DCCA objective correlates
    utterance-level encodings (each modality's masked mean over time),
    because unaligned modalities have different lengths and no step-to-step
    correspondence; (b) "fused sequence" = concatenation along time (the
    paper calls it `T_Fused` without saying how it is formed); (c) the skip
    connections of Fig. 2c are read as concatenating the masked means of
    the unimodal representations `Y_M` with that of `Z_Fused` before the
    head; the pooled encodings (the outputs of `CanonicalCorrelationLoss`,
    an identity) are concatenated too; (d) the head is the shared CMU-MOSEI head (`mosei_heads.add_mosei_head`,
    the same as MulT's): `Dense(num_classes)` with softmax (`"multiclass"`,
    the 6-way Acc_6 task) or sigmoid (`"multilabel"`, per-emotion binary).

    Layer names (used by `fit_hierarchical_stagewise`):
    `<M>_delta_attention`, `<M>_encoder_1`, `<M>_encoder_2`, `<M>_pool`,
    `<M>_encoding_pool`, `canonical_correlation`, `fused_sequence`,
    `fused_attention`, `fused_pool`, `head`.

    Args:
        input_shapes: dict `{modality: (steps, features)}`; the model's
            inputs are `<modality>` (float) and `<modality>_mask` (bool), as
            in the datasets' `inputs` (`load_delta_sequences`,
            `load_cmu_mosei`). `steps` may be None.
        num_classes: int, the number of classes / labels.
        head: "multiclass" (softmax) or "multilabel" (sigmoid).
        num_heads, filters, output_dim, kernel_size, delta_window, delta,
            use_delta: the per-modality `DeltaSelfAttention` arguments
            (`filters` = `d_ch`, `output_dim` = `d_o`).
        reduced_dim: `d_r`, the DCCA encoding width.
        encoder_kernel_size: kernel size of the two encoder convolutions.
        fused_heads, fused_dim: heads and width `d_t` of the fused attention.
        cca_weight, cca_top_k, cca_ridge: the `CanonicalCorrelationLoss`
            arguments (`cca_weight=0` disables the objective).
        dropout: attention dropout of all attention layers.
        name: model name.

    Returns:
        A functional `keras.Model` with `(batch, num_classes)` probabilities.

    Example:

    >>> from mmfusion_keras.models import build_hierarchical_delta_attention_model
    >>> model = build_hierarchical_delta_attention_model(
    ...     {"text": (20, 8), "vision": (30, 6), "audio": (16, 5)}, num_classes=4)
    >>> model.output.shape
    (None, 4)

    Reference:
        Panchal, "Hierarchical Delta-Attention Method for Multimodal
        Fusion", sections 4.1-4.4, Eq. 9-17, Fig. 2.
    """
    if not isinstance(input_shapes, dict) or len(input_shapes) < 2:
        raise ValueError(
            "build_hierarchical_delta_attention_model expected `input_shapes` "
            "to be a dict of at least two {modality: (steps, features)}. "
            f"Received: input_shapes={input_shapes!r}"
        )
    for m, shape in input_shapes.items():
        if len(tuple(shape)) != 2 or shape[-1] is None:
            raise ValueError(
                "build_hierarchical_delta_attention_model expected every input "
                "shape to be (steps, features) with a known feature width. "
                f"Received: {m!r}: {shape!r}"
            )
    if head not in _HEADS:
        raise ValueError(
            "build_hierarchical_delta_attention_model expected `head` in "
            f"{_HEADS}. Received: head={head!r}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            "build_hierarchical_delta_attention_model expected a positive "
            f"integer `num_classes`. Received: num_classes={num_classes!r}"
        )

    with warnings.catch_warnings():
        # The attention passes its padding mask on; the encoder convolutions
        # do not use it (the masks are passed explicitly where needed).
        warnings.filterwarnings("ignore", message=".*does not support masking.*")
        return _build(
            input_shapes,
            num_classes,
            head,
            num_heads,
            filters,
            output_dim,
            reduced_dim,
            kernel_size,
            delta_window,
            delta,
            use_delta,
            encoder_kernel_size,
            fused_heads,
            fused_dim,
            cca_weight,
            cca_top_k,
            cca_ridge,
            dropout,
            name,
        )


def _build(
    input_shapes,
    num_classes,
    head,
    num_heads,
    filters,
    output_dim,
    reduced_dim,
    kernel_size,
    delta_window,
    delta,
    use_delta,
    encoder_kernel_size,
    fused_heads,
    fused_dim,
    cca_weight,
    cca_top_k,
    cca_ridge,
    dropout,
    name,
):
    inputs, representations, masks, encodings, pooled = {}, [], [], [], []
    for m, (steps, features) in input_shapes.items():
        x = keras.Input((steps, features), name=m)
        mask = keras.Input((steps,), dtype="bool", name=f"{m}_mask")
        inputs[m], inputs[f"{m}_mask"] = x, mask
        y = DeltaSelfAttention(
            num_heads=num_heads,
            filters=filters,
            output_dim=output_dim,
            kernel_size=kernel_size,
            delta_window=delta_window,
            delta=delta,
            use_delta=use_delta,
            dropout=dropout,
            name=f"{m}_delta_attention",
        )(x, mask=mask)  # Eq. 9-12
        e = keras.layers.Conv1D(
            output_dim,
            encoder_kernel_size,
            padding="same",
            activation="relu",
            name=f"{m}_encoder_1",
        )(y)
        e = keras.layers.Conv1D(
            reduced_dim, encoder_kernel_size, padding="same", name=f"{m}_encoder_2"
        )(e)  # E(Y_M), section 4.2
        representations.append(y)
        masks.append(mask)
        encodings.append(e)
        pooled.append(
            keras.layers.GlobalAveragePooling1D(name=f"{m}_pool")(y, mask=mask)
        )
    views = [
        keras.layers.GlobalAveragePooling1D(name=f"{m}_encoding_pool")(e, mask=mask)
        for m, e, mask in zip(input_shapes, encodings, masks)
    ]
    views = CanonicalCorrelationLoss(
        top_k=cca_top_k,
        ridge=cca_ridge,
        weight=cca_weight,
        name="canonical_correlation",
    )(views)  # Eq. 13, identity on its inputs
    fused, fused_mask = FusedSequence(name="fused_sequence")(encodings + masks)
    z = DeltaSelfAttention(
        num_heads=fused_heads,
        filters=fused_dim,
        output_dim=fused_dim,
        kernel_size=1,
        use_delta=False,
        dropout=dropout,
        name="fused_attention",
    )(fused, mask=fused_mask)  # Eq. 14-16
    z = keras.layers.GlobalAveragePooling1D(name="fused_pool")(z, mask=fused_mask)
    h = keras.layers.Concatenate(name="skip_concat")([z, *pooled, *views])
    outputs = add_mosei_head(
        h, head=head, num_classes=num_classes, name="head"
    )  # Eq. 17
    return keras.Model(inputs, outputs, name=name)


def _compile_kwargs(model_head):
    if model_head == "multiclass":
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    return {"loss": "binary_crossentropy", "metrics": ["binary_accuracy"]}


def fit_hierarchical_stagewise(
    model,
    x,
    y,
    epochs=(10, 10, 5),
    learning_rates=(1e-3, 1e-3, 1e-3),
    batch_size=32,
    validation_data=None,
    verbose=0,
    compile_kwargs=None,
):
    """Trains a hierarchical delta-attention model module by module (Table 1).

    As in the paper's Table 1, each module is trained on its own, frozen,
    and the next one is trained on its outputs:

    1. each modality's `DeltaSelfAttention`, under a temporary softmax /
       sigmoid head on its masked mean (the unimodal classifiers of
       Table 2), for `epochs[0]` epochs;
    2. the DCCA encoders on the canonical-correlation objective alone (no
       labels), for `epochs[1]` epochs;
    3. the fused attention and the head on the labels, for `epochs[2]`.

    The paper saves each module's outputs and reloads them for the next
    module; here the frozen modules simply run inside the next stage's
    model, which gives the same training signal. Every stage uses Adam with
    its own learning rate. The trainable flags of all layers are restored
    at the end, so the model can still be fine-tuned end to end (compile it
    again first).

    Args:
        model: a model from `build_hierarchical_delta_attention_model`.
        x: dict of input arrays (`<modality>`, `<modality>_mask`).
        y: labels: int class indices (multiclass) or 0/1 `(N, classes)`.
        epochs: 3 ints, epochs of the three stages.
        learning_rates: 3 floats, Adam learning rates of the stages.
        batch_size: int.
        validation_data: optional `(x_val, y_val)` for stages 1 and 3.
        verbose: passed to `fit`.
        compile_kwargs: optional dict of extra `compile` arguments for every
            stage (e.g. `{"run_eagerly": True}` to skip tracing five models
            for a few steps, as in tests).

    Returns:
        A dict of `keras.callbacks.History.history` dicts: `"<modality>"`
        for each unimodal stage, `"dcca"` and `"fusion"`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.datasets import load_delta_sequences
    >>> from mmfusion_keras.models import (
    ...     build_hierarchical_delta_attention_model, fit_hierarchical_stagewise)
    >>> ds = load_delta_sequences("train", num_examples=16)
    >>> shapes = {m: ds.inputs[m].shape[1:] for m in ("text", "vision", "audio")}
    >>> model = build_hierarchical_delta_attention_model(shapes, 4)
    >>> histories = fit_hierarchical_stagewise(
    ...     model, ds.inputs, ds.labels, epochs=(1, 1, 1), batch_size=8)
    >>> sorted(histories)
    ['audio', 'dcca', 'fusion', 'text', 'vision']
    """
    if len(tuple(epochs)) != 3 or len(tuple(learning_rates)) != 3:
        raise ValueError(
            "fit_hierarchical_stagewise expected 3 `epochs` and 3 "
            "`learning_rates` (unimodal attention, DCCA, fusion). Received: "
            f"epochs={epochs!r}, learning_rates={learning_rates!r}"
        )
    names = [layer.name for layer in model.layers]
    modalities = [
        n[: -len("_delta_attention")] for n in names if n.endswith("_delta_attention")
    ]
    if not modalities or "head" not in names or "canonical_correlation" not in names:
        raise ValueError(
            "fit_hierarchical_stagewise expected a model built by "
            "build_hierarchical_delta_attention_model (layers '<modality>_"
            "delta_attention', 'canonical_correlation', 'head'). Received a "
            f"model with layers {names}"
        )
    head_layer = model.get_layer("head")
    task = "multiclass" if head_layer.activation.__name__ == "softmax" else "multilabel"
    num_classes = head_layer.units
    flags = {layer.name: layer.trainable for layer in model.layers}
    inputs = {i.name.split(":")[0]: i for i in model.inputs}
    x = dict(x)
    histories = {}

    def fit(sub, stage, targets, use_labels=True):
        kwargs = _compile_kwargs(task) if use_labels else {}
        sub.compile(
            keras.optimizers.Adam(learning_rates[stage]),
            **kwargs,
            **(compile_kwargs or {}),
        )
        feed = {k: x[k] for k in (i.name.split(":")[0] for i in sub.inputs)}
        val = None
        if validation_data is not None and use_labels:
            vx, vy = validation_data
            val = ({k: vx[k] for k in feed}, vy)
        return sub.fit(
            feed,
            targets,
            validation_data=val,
            epochs=epochs[stage],
            batch_size=batch_size,
            verbose=verbose,
        ).history

    try:
        # Stage 1: unimodal delta self-attention, temporary heads.
        activation = "softmax" if task == "multiclass" else "sigmoid"
        for m in modalities:
            attention = model.get_layer(f"{m}_delta_attention")
            xi, mi = inputs[m], inputs[f"{m}_mask"]
            pooled = keras.layers.GlobalAveragePooling1D()(
                attention(xi, mask=mi), mask=mi
            )
            probs = keras.layers.Dense(num_classes, activation=activation)(pooled)
            histories[m] = fit(keras.Model([xi, mi], probs), 0, y)
            attention.trainable = False
        # Stage 2: DCCA encoders on the correlation objective only.
        views = model.get_layer("canonical_correlation").output
        histories["dcca"] = fit(
            keras.Model(model.inputs, views), 1, None, use_labels=False
        )
        for m in modalities:
            model.get_layer(f"{m}_encoder_1").trainable = False
            model.get_layer(f"{m}_encoder_2").trainable = False
        # Stage 3: fused attention and head on the labels.
        histories["fusion"] = fit(model, 2, y)
    finally:
        for layer in model.layers:
            layer.trainable = flags[layer.name]
    return histories
