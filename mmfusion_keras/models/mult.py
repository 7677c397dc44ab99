"""MulT, the Multimodal Transformer of Tsai et al. (2019), for 3 sequences."""

import math

import keras
from keras import ops

from mmfusion_keras.layers.cross_modal_transformer_block import (
    CrossModalTransformerBlock,
)
from mmfusion_keras.layers.sinusoidal_position_embedding import (
    SinusoidalPositionEmbedding,
)
from mmfusion_keras.models.mosei_heads import add_mosei_head


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class _ScaledPositionEmbedding(keras.layers.Layer):
    """`sqrt(d) * x + PE(T, d)` (Eq. 5, with MulT's code scaling)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.positions = SinusoidalPositionEmbedding(
            name="positions", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.positions.build(input_shape)

    def call(self, x):
        return math.sqrt(x.shape[-1]) * x + self.positions(x)


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class _LastValidStep(keras.layers.Layer):
    """The last unmasked step of each sequence (the last step without mask)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            return x[:, -1]
        steps = ops.shape(x)[1]
        mask = ops.cast(mask, "int32")
        # Index of the last true entry; 0 for an all-false mask.
        last = ops.max(mask * ops.arange(steps)[None, :], axis=1)
        select = ops.one_hot(last, steps, dtype=x.dtype)
        return ops.einsum("bt,btd->bd", select, x)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def _transformer(
    target,
    source,
    target_mask,
    source_mask,
    num_layers,
    num_heads,
    attention_dropout,
    relu_dropout,
    residual_dropout,
    embedding_dropout,
    use_causal_mask,
    name,
):
    """MulT's `TransformerEncoder`: embedding dropout, blocks, final LN.

    `source is None` makes it a self-attention transformer. The inputs are
    already `sqrt(d) x + PE` (Eq. 5); each transformer draws its own
    embedding dropout, as in MulT's code.
    """
    z = keras.layers.Dropout(embedding_dropout, name=f"{name}_embedding_dropout")(
        target
    )
    if source is None:
        src_mask = target_mask
    else:
        src = keras.layers.Dropout(
            embedding_dropout, name=f"{name}_source_embedding_dropout"
        )(source)
        src_mask = source_mask
    for i in range(num_layers):
        block = CrossModalTransformerBlock(
            num_heads,
            attention_dropout=attention_dropout,
            relu_dropout=relu_dropout,
            residual_dropout=residual_dropout,
            use_causal_mask=use_causal_mask,
            name=f"{name}_layer_{i}",
        )
        # Eq. 6-8: Z^[0] = target, then layer i attends to the fixed source
        # Z_beta^[0] (self-attention: to its own current stream).
        z = block([z, z if source is None else src], mask=[target_mask, src_mask])
    return keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(z)


def _rates(value, argument):
    """One rate or three rates (one per modality) -> a tuple of 3 floats."""
    rates = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(rates) != 3 or not all(
        isinstance(r, (int, float)) and 0 <= r < 1 for r in rates
    ):
        raise ValueError(
            f"build_mult_model expects `{argument}` to be one rate or three "
            f"rates (one per modality), each in [0, 1). Received: "
            f"{argument}={value!r}"
        )
    return tuple(float(r) for r in rates)


def build_mult_model(
    input_shapes,
    width=30,
    num_heads=5,
    num_layers=5,
    attention_dropout=(0.1, 0.0, 0.0),
    memory_attention_dropout=None,
    memory_num_layers=None,
    relu_dropout=0.1,
    residual_dropout=0.1,
    embedding_dropout=0.25,
    input_dropout=None,
    output_dropout=0.0,
    use_causal_mask=True,
    conv_kernel_size=1,
    use_masks=True,
    head="multilabel",
    num_classes=6,
    modality_names=("language", "vision", "acoustic"),
    name="mult",
):
    """Builds MulT for three (unaligned) sequence modalities.

    The architecture of Tsai et al. (2019) as their public code
    (`src/models.py`, `modules/transformer.py`) defines it, for three
    modalities given in the order language, vision, acoustic (the first
    one is treated as MulT's language input). Defaults: width 30 per
    modality, 5 layers, 5 heads, attention dropout 0.1 / 0.0 / 0.0 (MulT's
    `attn_dropout`, `attn_dropout_v`, `attn_dropout_a`), ReLU and residual
    dropout 0.1, embedding dropout 0.25, causal attention mask on:

    1. per modality `m`: the raw language input goes through dropout
       (MulT: `F.dropout(x_l, embed_dropout)`; `input_dropout`), then
       `X_hat_m = Conv1D(X_m)` to `width` channels, no bias (Eq. 4), then
       `Z_m^[0] = sqrt(width) X_hat_m + PE` (Eq. 5; the `sqrt(d)` scale is
       from MulT's code);
    2. six directional cross-modal transformers `beta -> alpha` of
       `num_layers` `CrossModalTransformerBlock`s (Eq. 6-8) and a final
       layer norm; source padding is masked. Their attention dropout is
       the rate of the SOURCE modality `beta` (MulT's `get_network`: the
       transformer `L <- A` uses `attn_dropout_a`, `A <- L` uses
       `attn_dropout`);
    3. per target `alpha`: concatenate `[V -> L, A -> L]` etc. over
       features (`2 * width`), then a self-attention ("memory") transformer
       of `max(num_layers, 3)` blocks (MulT: `layers=max(self.layers, 3)`)
       whose attention dropout is the language rate `attention_dropout[0]`
       for all three (MulT: `attn_dropout`);
    4. the last valid time step of each of the three (MulT takes the last
       step; with masks, the last unpadded one), concatenated (`6 * width`);
    5. MulT's residual MLP `h + W_2 dropout(ReLU(W_1 h))`, then the
       CMU-MOSEI head of `mosei_heads.add_mosei_head`.

    Every attention uses MulT's causal mask by default (MulT's `--attn_mask`
    flag is `store_false`, i.e. on unless disabled): target step `i` sees
    source steps `j <= i + |T_beta - T_alpha|` (see `CrossModalAttention`);
    `use_causal_mask=False` turns it off.

    Where this still differs from MulT's code, and why:

    - Padding masks (`use_masks`) and the last *unpadded* step: MulT has
      none (it pads to a fixed length and reads the last padded step). With
      the causal mask the offset `|T_beta - T_alpha|` uses padded lengths,
      as MulT's does.
    - The target and source of a cross-modal block have their own layer
      norms (MulT's block applies one shared norm to both, which needs
      equal widths) and keys and values share one embedding dropout of the
      source (MulT draws separate dropout masks for keys and for values).
    - The `sqrt(d) x + PE` embedding is computed once per stream and
      shared by the transformers reading it (MulT recomputes the same
      values in each transformer); the embedding dropout is still drawn
      per transformer.
    - The Conv1D projection is always applied (MulT skips it when a
      modality's width already equals `width`).

    Args:
        input_shapes: three `(time, features)` shapes (time may be None),
            in the order of `modality_names`.
        width: model width per modality `d` (MulT: 30).
        num_heads: heads per attention; must divide `width`.
        num_layers: blocks per cross-modal transformer.
        attention_dropout: one rate, or one per SOURCE modality in the order
            of `modality_names` (MulT: `attn_dropout`, `attn_dropout_v`,
            `attn_dropout_a` = 0.1, 0, 0).
        memory_attention_dropout: attention dropout of the three
            self-attention transformers; default `attention_dropout[0]`
            (MulT's `attn_dropout`).
        memory_num_layers: blocks per self-attention transformer; default
            `max(num_layers, 3)` as in MulT.
        relu_dropout / residual_dropout / embedding_dropout: as in MulT.
        input_dropout: dropout on the raw inputs, one rate or one per
            modality; default `(embedding_dropout, 0, 0)`: MulT drops the
            raw language input only, with its embedding dropout.
        output_dropout: dropout inside the final residual MLP.
        use_causal_mask: MulT's causal attention mask (default True, as in
            MulT's code).
        conv_kernel_size: kernel of the Conv1D projections (MulT: 1).
        use_masks: add boolean `<name>_mask` inputs `(batch, time)`.
        head: `"multilabel"` or `"multiclass"` (see `mosei_heads`).
        num_classes: number of emotion classes.
        modality_names: names of the three inputs; the first is MulT's
            language modality.
        name: model name.

    Returns:
        A functional `keras.Model`. Inputs (a dict or a list in this order):
        the three sequences, then (with `use_masks`) their masks. Output:
        `(batch, num_classes)` probabilities.

    Example:

    >>> from mmfusion_keras.models import build_mult_model
    >>> model = build_mult_model([(6, 10), (4, 5), (8, 3)], width=8,
    ...                          num_heads=2, num_layers=1)
    >>> [tuple(x.shape) for x in model.inputs][:3]
    [(None, 6, 10), (None, 4, 5), (None, 8, 3)]
    >>> len([l for l in model.layers if l.name.startswith("language_memory_layer")])
    3

    Reference:
        Tsai, Bai, Liang, Kolter, Morency, Salakhutdinov. Multimodal
        Transformer for Unaligned Multimodal Language Sequences. ACL 2019,
        and its public code (github.com/yaohungt/Multimodal-Transformer);
        restated in Panchal, Hierarchical Delta-Attention Method for
        Multimodal Fusion, Eq. 1-8.
    """
    if len(input_shapes) != 3 or len(modality_names) != 3:
        raise ValueError(
            "build_mult_model expects three modalities: three (time, features) "
            f"input shapes and three names. Received input_shapes={input_shapes} "
            f"and modality_names={modality_names}."
        )
    for shape in input_shapes:
        if len(tuple(shape)) != 2 or shape[-1] is None:
            raise ValueError(
                "build_mult_model expects every input shape to be (time, "
                f"features) with known features. Received {tuple(shape)} in "
                f"input_shapes={input_shapes}."
            )
    if width % num_heads:
        raise ValueError(
            "build_mult_model expects `num_heads` to divide `width`. "
            f"Received width={width}, num_heads={num_heads}."
        )
    attention_dropout = _rates(attention_dropout, "attention_dropout")
    if memory_attention_dropout is None:
        memory_attention_dropout = attention_dropout[0]
    input_dropout = _rates(
        (embedding_dropout, 0.0, 0.0) if input_dropout is None else input_dropout,
        "input_dropout",
    )
    if memory_num_layers is None:
        memory_num_layers = max(num_layers, 3)
    for argument, value in (
        ("num_layers", num_layers),
        ("memory_num_layers", memory_num_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"build_mult_model expects `{argument}` to be a positive "
                f"integer. Received: {argument}={value!r}"
            )

    # === Inputs ===
    sequences = [
        keras.Input(tuple(shape), name=n)
        for shape, n in zip(input_shapes, modality_names)
    ]
    masks = (
        [
            keras.Input((shape[0],), dtype="bool", name=f"{n}_mask")
            for shape, n in zip(input_shapes, modality_names)
        ]
        if use_masks
        else [None, None, None]
    )

    # === Eq. 4-5: temporal projection and positions ===
    embedded = []
    for x, n, rate in zip(sequences, modality_names, input_dropout):
        if rate:
            # MulT: F.dropout(x_l, p=embed_dropout) on the raw language input.
            x = keras.layers.Dropout(rate, name=f"{n}_input_dropout")(x)
        h = keras.layers.Conv1D(
            width,
            conv_kernel_size,
            padding="same",
            use_bias=False,
            name=f"{n}_projection",
        )(x)
        embedded.append(_ScaledPositionEmbedding(name=f"{n}_positions")(h))

    # === Cross-modal transformers and per-target self-attention ===
    summaries = []
    for a, target_name in enumerate(modality_names):
        crossed = []
        for b, source_name in enumerate(modality_names):
            if a == b:
                continue
            crossed.append(
                _transformer(
                    embedded[a],
                    embedded[b],
                    masks[a],
                    masks[b],
                    num_layers,
                    num_heads,
                    attention_dropout[b],  # keyed by the source, as MulT
                    relu_dropout,
                    residual_dropout,
                    embedding_dropout,
                    use_causal_mask,
                    name=f"{source_name}_to_{target_name}",
                )
            )
        joint = keras.layers.Concatenate(name=f"{target_name}_cross")(crossed)
        joint = _ScaledPositionEmbedding(name=f"{target_name}_memory_positions")(joint)
        memory = _transformer(
            joint,
            None,
            masks[a],
            None,
            memory_num_layers,
            num_heads,
            memory_attention_dropout,
            relu_dropout,
            residual_dropout,
            embedding_dropout,
            use_causal_mask,
            name=f"{target_name}_memory",
        )
        if masks[a] is None:
            summaries.append(_LastValidStep(name=f"{target_name}_last")(memory))
        else:
            summaries.append(
                _LastValidStep(name=f"{target_name}_last")(memory, mask=masks[a])
            )

    # === Residual MLP and head ===
    combined = keras.layers.Concatenate(name="combined")(summaries)
    hidden = keras.layers.Dense(6 * width, activation="relu", name="proj1")(combined)
    hidden = keras.layers.Dropout(output_dropout, name="output_dropout")(hidden)
    hidden = keras.layers.Dense(6 * width, name="proj2")(hidden)
    hidden = keras.layers.Add(name="residual")([hidden, combined])
    outputs = add_mosei_head(hidden, head=head, num_classes=num_classes)
    inputs = sequences + ([m for m in masks] if use_masks else [])
    return keras.Model(inputs, outputs, name=name)
