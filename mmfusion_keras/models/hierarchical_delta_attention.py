"""The hierarchical delta-attention model (Panchal, Fig. 2) and its training paths."""

import copy
import json
import os
import warnings

import keras
import numpy as np
from keras import ops

from mmfusion_keras.layers.canonical_correlation_loss import CanonicalCorrelationLoss
from mmfusion_keras.layers.canonical_projection import CanonicalProjection
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


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class ReconstructionLoss(keras.layers.Layer):
    """Adds a masked reconstruction error to the loss; passes its first input on.

    A helper of `build_hierarchical_delta_attention_model` (the decoders
    `θ_D` of section 4.2): takes `[passthrough, target, reconstruction,
    mask]` and, in training, adds `weight * mean over real steps of the
    squared error per feature`. Returns `passthrough` unchanged, so the
    decoder branch stays in the functional graph.

    Args:
        weight: non-negative factor of the added loss.
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or weight < 0
        ):
            raise ValueError(
                "ReconstructionLoss expected a non-negative `weight`. "
                f"Received: weight={weight!r}"
            )
        self.weight = float(weight)

    def call(self, inputs, training=None):
        passthrough, target, reconstruction, mask = inputs
        if training and self.weight > 0:
            m = ops.cast(mask, "float32")[:, :, None]
            err = ops.square(
                ops.cast(reconstruction, "float32") - ops.cast(target, "float32")
            )
            per_step = ops.mean(err, axis=-1, keepdims=True)
            self.add_loss(
                self.weight * ops.sum(per_step * m) / ops.maximum(ops.sum(m), 1.0)
            )
        return passthrough

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs[0].shape, dtype=inputs[0].dtype)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


def build_hierarchical_delta_attention_model(
    input_shapes,
    num_classes,
    head="multiclass",
    num_heads=2,
    filters=16,
    output_dim=16,
    reduced_dim=8,
    encoder_dim=None,
    kernel_size=3,
    delta_window=None,
    delta="relative",
    use_delta=True,
    share_across_heads=True,
    key_range="forward",
    encoder_kernel_size=3,
    fused_heads=1,
    fused_dim=16,
    skip_connections=True,
    cca_weight=0.1,
    cca_top_k=None,
    cca_ridge=1e-3,
    multiview="pairwise",
    projection_momentum=0.9,
    reconstruction_weight=0.0,
    dropout=0.0,
    name="hierarchical_delta_attention",
):
    """The hierarchical delta-attention fusion model for sequence modalities.

    For every modality `M` (Fig. 2c, bottom to top):

    1. multi-head delta self-attention `Y_M = MHDSA(X_M)` (`DeltaSelfAttention`,
       section 4.1, Eq. 9-12), `(batch, T_M, d_o)`;
    2. the DCCA encoder `E(Y_M)`, "a 2 layer convolution network" (section
       4.2): Conv1D `d_o -> d_o` with ReLU, then Conv1D `d_o -> d_e`
       (`encoder_dim`, default `d_o`), 'same' padding;
       `CanonicalCorrelationLoss` adds `-cca_weight x` the correlation of
       the encodings (masked means over time; top `cca_top_k`, default
       `d_r`, directions; `multiview="pairwise"` sums the three pairs,
       `"maxvar"` is one generalized CCA) to the training loss (Eq. 13);
    3. the canonical projection `Ŷ_M = CCA(E(Y_M)) ∈ R^{T_M × d_r}`
       (`CanonicalProjection`: every step onto the top `d_r` shared
       canonical directions, from moving statistics);
    4. optional decoders `θ_D` (`reconstruction_weight > 0`): two Conv1D
       layers `d_r -> d_o` (ReLU) `-> d_o` reconstruct `Y_M` from `Ŷ_M`, with
       a masked squared error added to the loss;

    then the fused cross-attention (section 4.3): every modality's steps,
    with the **skip connections** of section 4 ("skip connections of the
    individual representation vector and the correlated vector to
    cross-attend across all the modalities"): `[Ŷ_M ; Y_M]` per step
    (`skip_connections=False`: `Ŷ_M` alone), joined along time into
    `Ŷ_Fused` (each step tagged with a learned modality embedding),
    attended by one plain multi-head self-attention (Eq. 14-16: a
    `DeltaSelfAttention` with `use_delta=False`, `kernel_size=1`,
    `key_range="both"`) into `Z_Fused`, and the head on `Z_Fused` alone
    (Eq. 17: `softmax(Linear(Z_Fused))`, after a masked mean over the fused
    steps).

    **Readings of the paper.** (a) The correlation is measured between
    utterance-level encodings (masked means), because unaligned modalities
    have different lengths and no step-to-step correspondence; the
    canonical directions found there are applied to every step, which gives
    `Ŷ ∈ R^{T_M × d_r}` as the paper writes. (b) "Fused sequence" =
    concatenation along time (the paper names `T_Fused` without saying how
    it is formed). (c) The skip connections are read as feature-wise
    concatenation of the unimodal representation `Y_M` with the correlated
    `Ŷ_M` at the input of the cross-attention. (d) The head is the shared
    CMU-MOSEI head (`mosei_heads.add_mosei_head`, the same as MulT's):
    softmax (`"multiclass"`, the 6-way task) or sigmoid (`"multilabel"`).

    Layer names (used by `fit_hierarchical_stagewise`):
    `<M>_delta_attention`, `<M>_encoder_1`, `<M>_encoder_2`,
    `canonical_correlation`, `canonical_projection`, `<M>_decoder_1`,
    `<M>_decoder_2`, `<M>_reconstruction` (when decoders are on), `<M>_skip`,
    `fused_sequence`, `fused_attention`, `fused_pool`, `head`.

    Args:
        input_shapes: dict `{modality: (steps, features)}`; the model's
            inputs are `<modality>` (float) and `<modality>_mask` (bool), as
            in the datasets' `inputs` (`load_delta_sequences`,
            `load_cmu_mosei`). `steps` may be None only with
            `delta != "relative"` or `use_delta=False`.
        num_classes: int, the number of classes / labels.
        head: "multiclass" (softmax) or "multilabel" (sigmoid).
        num_heads, filters, output_dim, kernel_size, delta_window, delta,
            use_delta, share_across_heads, key_range: the per-modality
            `DeltaSelfAttention` arguments (`filters` = `d_ch`, `output_dim`
            = `d_o`; the relative table has `steps` columns).
        reduced_dim: `d_r`, the width of the canonical projection.
        encoder_dim: `d_e`, the encoder output width (default `d_o`).
        encoder_kernel_size: kernel size of the encoder convolutions.
        fused_heads, fused_dim: heads and width `d_t` of the fused attention.
        skip_connections: bool, concatenate `Y_M` to `Ŷ_M` (default True).
        cca_weight, cca_top_k, cca_ridge, multiview: the
            `CanonicalCorrelationLoss` arguments (`cca_weight=0` disables
            the objective; `cca_top_k=None` means `d_r`).
        projection_momentum: momentum of the projection's statistics.
        reconstruction_weight: weight of the decoders' reconstruction loss;
            0 (default) builds no decoders.
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
    encoder_dim = encoder_dim or output_dim
    if reduced_dim > encoder_dim:
        raise ValueError(
            "build_hierarchical_delta_attention_model expected `reduced_dim` "
            f"(d_r) <= `encoder_dim` (d_e). Received: reduced_dim={reduced_dim}, "
            f"encoder_dim={encoder_dim}"
        )
    attention_kwargs = {
        "num_heads": num_heads,
        "filters": filters,
        "output_dim": output_dim,
        "kernel_size": kernel_size,
        "delta_window": delta_window,
        "delta": delta,
        "use_delta": use_delta,
        "share_across_heads": share_across_heads,
        "key_range": key_range,
        "dropout": dropout,
    }
    with warnings.catch_warnings():
        # The attention passes its padding mask on; the encoder convolutions
        # do not use it (the masks are passed explicitly where needed).
        warnings.filterwarnings("ignore", message=".*does not support masking.*")
        warnings.filterwarnings("ignore", message=".*was passed an input with a mask.*")
        inputs, ys, masks, encodings = {}, [], [], []
        for m, (steps, features) in input_shapes.items():
            x = keras.Input((steps, features), name=m)
            mask = keras.Input((steps,), dtype="bool", name=f"{m}_mask")
            inputs[m], inputs[f"{m}_mask"] = x, mask
            y = DeltaSelfAttention(**attention_kwargs, name=f"{m}_delta_attention")(
                x, mask=mask
            )  # Eq. 9-12
            e = keras.layers.Conv1D(
                output_dim,
                encoder_kernel_size,
                padding="same",
                activation="relu",
                name=f"{m}_encoder_1",
            )(y)
            e = keras.layers.Conv1D(
                encoder_dim, encoder_kernel_size, padding="same", name=f"{m}_encoder_2"
            )(e)  # E(Y_M), section 4.2
            ys.append(y)
            masks.append(mask)
            encodings.append(e)
        encodings = CanonicalCorrelationLoss(
            top_k=cca_top_k or reduced_dim,
            ridge=cca_ridge,
            weight=cca_weight,
            multiview=multiview,
            name="canonical_correlation",
        )(encodings, mask=masks)  # Eq. 13 (identity on its inputs)
        projected = CanonicalProjection(
            reduced_dim,
            ridge=cca_ridge,
            momentum=projection_momentum,
            name="canonical_projection",
        )(encodings, mask=masks)  # Ŷ_M = CCA(E(Y_M)), section 4.2
        steps_in = []
        for m, y, yhat, mask in zip(input_shapes, ys, projected, masks):
            if reconstruction_weight > 0:
                r = keras.layers.Conv1D(
                    output_dim,
                    encoder_kernel_size,
                    padding="same",
                    activation="relu",
                    name=f"{m}_decoder_1",
                )(yhat)
                r = keras.layers.Conv1D(
                    output_dim,
                    encoder_kernel_size,
                    padding="same",
                    name=f"{m}_decoder_2",
                )(r)  # θ_D
                yhat = ReconstructionLoss(
                    reconstruction_weight, name=f"{m}_reconstruction"
                )([yhat, y, r, mask])
            if skip_connections:
                yhat = keras.layers.Concatenate(name=f"{m}_skip")([yhat, y])
            steps_in.append(yhat)
        fused, fused_mask = FusedSequence(name="fused_sequence")(steps_in + masks)
        z = DeltaSelfAttention(
            num_heads=fused_heads,
            filters=fused_dim,
            output_dim=fused_dim,
            kernel_size=1,
            use_delta=False,
            key_range="both",
            dropout=dropout,
            name="fused_attention",
        )(fused, mask=fused_mask)  # Eq. 14-16
        z = keras.layers.GlobalAveragePooling1D(name="fused_pool")(z, mask=fused_mask)
        outputs = add_mosei_head(
            z, head=head, num_classes=num_classes, name="head"
        )  # Eq. 17
        return keras.Model(inputs, outputs, name=name)


def _compile_kwargs(model_head):
    if model_head == "multiclass":
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    return {"loss": "binary_crossentropy", "metrics": ["binary_accuracy"]}


_RECIPE_FILE = os.path.join(
    os.path.dirname(__file__), "hierarchical_delta_attention_table1.json"
)
_RECIPE_KEYS = ("epochs", "learning_rate", "batch_size", "weight_decay")
_MODALITY_ALIASES = {
    "text": ("text", "language", "l"),
    "vision": ("vision", "visual", "v"),
    "audio": ("audio", "acoustic", "acoustics", "a"),
}


def load_table1_recipe():
    """Table 1 of the paper as a recipe dict (from the JSON file beside this module).

    `{"self_attention": {"text"|"vision"|"audio": {...}}, "dcca": {...},
    "fusion": {...}}`, each with `epochs`, `learning_rate`, `batch_size`,
    `weight_decay` (Adam).
    """
    with open(_RECIPE_FILE) as f:
        recipe = json.load(f)
    recipe.pop("source", None)
    return recipe


def _merge_recipe(recipe):
    base = load_table1_recipe()
    if recipe is None:
        return base
    if not isinstance(recipe, dict):
        raise ValueError(
            "fit_hierarchical_stagewise expected `recipe` to be a dict like "
            "load_table1_recipe(). Received: recipe={recipe!r}"
        )
    merged = copy.deepcopy(base)
    for stage, value in recipe.items():
        if stage not in ("self_attention", "dcca", "fusion"):
            raise ValueError(
                "fit_hierarchical_stagewise expected recipe stages in "
                "('self_attention', 'dcca', 'fusion'). Received: "
                f"{stage!r}"
            )
        if stage == "self_attention":
            for modality, settings in value.items():
                merged[stage].setdefault(modality, {}).update(settings)
        else:
            merged[stage].update(value)
    return merged


def _modality_settings(recipe, modality):
    table = recipe["self_attention"]
    if modality in table:
        return table[modality]
    for key, aliases in _MODALITY_ALIASES.items():
        if modality.lower() in aliases and key in table:
            return table[key]
    if "default" in table:
        return table["default"]
    raise ValueError(
        "fit_hierarchical_stagewise found no self-attention settings for "
        f"modality {modality!r} in the recipe (it has {sorted(table)}). Add "
        f"recipe['self_attention'][{modality!r}] or a 'default' entry"
    )


def _check_settings(settings, where):
    missing = [k for k in _RECIPE_KEYS if k not in settings]
    if missing:
        raise ValueError(
            f"fit_hierarchical_stagewise: the recipe entry of {where} lacks "
            f"{missing}. Received: {settings!r}"
        )


def fit_hierarchical_stagewise(
    model,
    x,
    y,
    recipe=None,
    validation_data=None,
    retrain_on_validation=False,
    epochs=None,
    learning_rates=None,
    batch_size=None,
    verbose=0,
    compile_kwargs=None,
    on_stage_end=None,
):
    """Trains a hierarchical delta-attention model module by module (Table 1).

    As in the paper's Table 1, each module is trained on its own, frozen,
    and the next one is trained on its outputs, each with its own Adam
    settings (epochs, learning rate, mini-batch size, weight decay):

    1. each modality's `DeltaSelfAttention` (`SelfAttn_L`, `_V`, `_A`),
       under a temporary softmax / sigmoid head on its masked mean (the
       unimodal classifiers of Table 2), then frozen;
    2. DCCA: the encoders (and decoders, if any) on the correlation (and
       reconstruction) objective alone, no labels; the canonical
       projection's statistics are collected here; then frozen;
    3. `CrossAttn_Fused`: the fused attention and the head on the labels.

    The paper saves each module's outputs and reloads them for the next
    module; here the frozen modules run inside the next stage's model,
    which gives the same training signal. Keras's Adam with `weight_decay`
    applies decoupled weight decay (AdamW-style; the paper does not say
    which form it used). The trainable flags of all layers are restored at
    the end, so the model can still be fine-tuned end to end (compile it
    again first).

    **Recipe.** `recipe=None` uses Table 1 (`load_table1_recipe()`, the
    JSON file beside this module). A dict overrides parts of it, e.g.
    `{"dcca": {"epochs": 5}, "self_attention": {"text": {"learning_rate":
    1e-3}}}`. Modalities are looked up by name, then by alias (L =
    text/language, V = vision/visual, A = audio/acoustic), then a
    `"default"` entry. `epochs` / `learning_rates` (3 values: attention,
    DCCA, fusion) and `batch_size` override every module of a stage at
    once (short runs, tests).

    **Retraining on train + validation.** The paper tunes on the validation
    split, then "merged validation and train set into one and re-learned
    the model with it". With `retrain_on_validation=True` (needs
    `validation_data`), the recipe runs once with validation monitoring,
    then the model is reset to its initial weights and trained again on
    train + validation.

    Args:
        model: a model from `build_hierarchical_delta_attention_model`.
        x: dict of input arrays (`<modality>`, `<modality>_mask`).
        y: labels: int class indices (multiclass) or 0/1 `(N, classes)`.
        recipe: None (Table 1) or a dict of overrides, see above.
        validation_data: optional `(x_val, y_val)` for stages 1 and 3.
        retrain_on_validation: bool, see above.
        epochs: None or 3 ints, override the recipe's epochs per stage.
        learning_rates: None or 3 floats, override the learning rates.
        batch_size: None or int, override every batch size.
        verbose: passed to `fit`.
        compile_kwargs: optional dict of extra `compile` arguments for every
            stage (e.g. `{"run_eagerly": True}` in tests).
        on_stage_end: optional `fn(stage_name, model)` called after each
            module's stage (`"<modality>"`, `"dcca"`, `"fusion"`), e.g. to
            snapshot weights.

    Returns:
        A dict of `keras.callbacks.History.history` dicts: `"<modality>"`
        for each unimodal stage, `"dcca"` and `"fusion"`. With
        `retrain_on_validation`, `{"selection": ..., "final": ...}`, one
        such dict per run.

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
    for value in (epochs, learning_rates):
        if value is not None and len(tuple(value)) != 3:
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
    if retrain_on_validation and validation_data is None:
        raise ValueError(
            "fit_hierarchical_stagewise(retrain_on_validation=True) needs "
            "`validation_data` to merge into the training set. Received: "
            "validation_data=None"
        )
    recipe = _merge_recipe(recipe)
    plan = {m: dict(_modality_settings(recipe, m)) for m in modalities}
    plan["dcca"] = dict(recipe["dcca"])
    plan["fusion"] = dict(recipe["fusion"])
    for key, stage_names in (
        (0, modalities),
        (1, ["dcca"]),
        (2, ["fusion"]),
    ):
        for n in stage_names:
            if epochs is not None:
                plan[n]["epochs"] = int(epochs[key])
            if learning_rates is not None:
                plan[n]["learning_rate"] = float(learning_rates[key])
            if batch_size is not None:
                plan[n]["batch_size"] = int(batch_size)
            _check_settings(plan[n], n)
    if not retrain_on_validation:
        return _run_stages(
            model, modalities, plan, x, y, validation_data, verbose,
            compile_kwargs, on_stage_end,
        )  # fmt: skip
    initial = model.get_weights()
    selection = _run_stages(
        model, modalities, plan, x, y, validation_data, verbose,
        compile_kwargs, on_stage_end,
    )  # fmt: skip
    model.set_weights(initial)
    vx, vy = validation_data
    merged_x = {k: np.concatenate([np.asarray(x[k]), np.asarray(vx[k])]) for k in x}
    merged_y = np.concatenate([np.asarray(y), np.asarray(vy)])
    final = _run_stages(
        model, modalities, plan, merged_x, merged_y, None, verbose,
        compile_kwargs, on_stage_end,
    )  # fmt: skip
    return {"selection": selection, "final": final}


def _run_stages(
    model,
    modalities,
    plan,
    x,
    y,
    validation_data,
    verbose,
    compile_kwargs,
    on_stage_end,
):
    head_layer = model.get_layer("head")
    task = "multiclass" if head_layer.activation.__name__ == "softmax" else "multilabel"
    num_classes = head_layer.units
    names = [layer.name for layer in model.layers]
    flags = {layer.name: layer.trainable for layer in model.layers}
    inputs = {i.name.split(":")[0]: i for i in model.inputs}
    x = dict(x)
    histories = {}

    def fit(sub, settings, targets, use_labels=True):
        kwargs = _compile_kwargs(task) if use_labels else {}
        sub.compile(
            keras.optimizers.Adam(
                settings["learning_rate"],
                weight_decay=settings["weight_decay"] or None,
            ),
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
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            verbose=verbose,
        ).history

    def done(stage):
        if on_stage_end is not None:
            on_stage_end(stage, model)

    dcca_layers = ["canonical_projection"] + [
        f"{m}_{part}"
        for m in modalities
        for part in ("encoder_1", "encoder_2", "decoder_1", "decoder_2")
    ]
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
            histories[m] = fit(keras.Model([xi, mi], probs), plan[m], y)
            attention.trainable = False
            done(m)
        # Stage 2: DCCA encoders (+ decoders) on the correlation objective only;
        # the projection collects its statistics.
        if "canonical_projection" in names:
            outputs = [
                model.get_layer(f"{m}_reconstruction").output
                if f"{m}_reconstruction" in names
                else model.get_layer("canonical_projection").output[i]
                for i, m in enumerate(modalities)
            ]
        else:  # models built before the projection existed
            outputs = model.get_layer("canonical_correlation").output
        histories["dcca"] = fit(
            keras.Model(model.inputs, outputs), plan["dcca"], None, use_labels=False
        )
        for n in dcca_layers:
            if n in names:
                model.get_layer(n).trainable = False
        done("dcca")
        # Stage 3: fused attention and head on the labels.
        histories["fusion"] = fit(model, plan["fusion"], y)
        done("fusion")
    finally:
        for layer in model.layers:
            layer.trainable = flags[layer.name]
    return histories
