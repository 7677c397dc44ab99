import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion
from mmfusion_keras.layers.feature_self_attention import FeatureSelfAttention

_READ_MODES = ("self", "cross")
_MEMORY_MODES = ("fused", "per_modality")
_WRITE_MODES = ("selected", "soft")
_COMPOSITION_READINGS = ("softmax_features", "literal", "rescaled", "vector")
_READ_SIMILARITIES = (
    "dot",
    "scaled",
    "cosine",
    "centered_dot",
    "centered_scaled",
    "centered_cosine",
)
# What a config saved before `write` / `composition_attention` /
# `read_similarity` existed meant.
_OLD_DEFAULTS = {
    "write": "soft",
    "composition_attention": "softmax_features",
    "read_similarity": "dot",
    "read_projection_bias": True,
}


def _check_batch_size(tensor):
    batch = tensor.shape[0]
    if batch == 0:
        raise ValueError(
            "MemoryBasedAttentiveFusion cannot write a zero-size batch into its "
            "memory: expected a training batch of at least 1 sample. Received "
            f"inputs of shape {tuple(tensor.shape)}."
        )


def batch_memory_write(memory, read_weights, written):
    """Applies Eq. 8 once per sample, in sample order, in closed form.

    One write of sample `s` is `M <- M * (1 - z_s 1^T) + z_s h_s^T`, i.e.
    per slot `j`: `M_j <- (1 - z_sj) M_j + z_sj h_s`. Unrolled over a batch
    of `B` samples, slot `j` ends as

        M_j' = prod_s (1 - z_sj) M_j + sum_s z_sj prod_{t > s} (1 - z_tj) h_s

    which needs the reverse exclusive cumulative product of `(1 - z)` over
    the batch, and no loop (so it compiles under XLA on every backend).

    Args:
        memory: `(k, l)` memory before the batch.
        read_weights: `(B, k)` write keys `z` of the batch's samples.
        written: `(B, l)` vectors `h` written by the samples.

    With one-hot keys (`write="selected"`) the products are 0 or 1, so the
    formula is exact: slot `j` ends as the `h` of the last sample that
    selected it, or keeps its value when no sample selected it.

    Args:
        memory: `(k, l)` memory before the batch.
        read_weights: `(B, k)` write keys `z` of the batch's samples.
        written: `(B, l)` vectors `h` written by the samples.

    Returns:
        The `(k, l)` memory after the `B` sequential writes.
    """
    _check_batch_size(read_weights)
    keep = 1.0 - read_weights  # (B, k)
    # suffix[s] = prod_{t >= s} keep[t]
    suffix = ops.flip(ops.cumprod(ops.flip(keep, axis=0), axis=0), axis=0)
    kept = suffix[0]  # prod over the whole batch, (k,)
    after = ops.concatenate([suffix[1:], ops.ones_like(suffix[:1])], axis=0)
    weights = read_weights * after  # z_sj prod_{t > s} (1 - z_tj)
    return kept[:, None] * memory + ops.matmul(ops.transpose(weights), written)


def write_keys(read_weights, write):
    """The keys of Eq. 8: `z` itself (`"soft"`) or the one-hot of its
    argmax (`"selected"`, the slot r the paper's prose writes to)."""
    if write == "soft":
        return read_weights
    slots = ops.shape(read_weights)[-1]
    return ops.one_hot(
        ops.argmax(read_weights, axis=-1), slots, dtype=read_weights.dtype
    )


def safe_memory_write(memory, read_weights, written, write="soft", valid=None):
    """Eq. 8 over a batch, skipping the writes that are not finite.

    A sample whose key `z` or written vector `h` holds NaN or inf writes
    nothing (its key is zeroed), the other samples write as usual, in
    order. Should the result still hold a non-finite value, the whole batch
    write is skipped and the memory keeps its value.

    Args:
        memory: `(k, l)` memory before the batch.
        read_weights: `(B, k)` read weights `z` (Eq. 2).
        written: `(B, l)` vectors `h` (Eq. 7).
        write: `"soft"` or `"selected"` (see `write_keys`).
        valid: optional `(B,)` booleans; a sample marked False writes
            nothing and counts as skipped (the layer passes whether the
            sample's inputs are finite: a backend whose ReLU maps NaN to 0,
            as TensorFlow's does, would otherwise let it write).

    Returns:
        `(new_memory, skipped)`: the `(k, l)` memory after the batch and
        the number of sample writes skipped (a float scalar).
    """
    finite = ops.logical_and(
        ops.all(ops.isfinite(read_weights), axis=-1),
        ops.all(ops.isfinite(written), axis=-1),
    )  # (B,)
    if valid is not None:
        finite = ops.logical_and(finite, valid)
    keys = write_keys(ops.where(finite[:, None], read_weights, 0.0), write)
    keys = ops.where(finite[:, None], keys, 0.0)
    values = ops.where(finite[:, None], written, 0.0)
    new_memory = batch_memory_write(memory, keys, values)
    ok = ops.all(ops.isfinite(new_memory))
    valid = ops.sum(ops.cast(finite, "float32"))
    batch = ops.cast(ops.shape(finite)[0], "float32")
    skipped = ops.where(ok, batch - valid, batch)
    return ops.where(ok, new_memory, memory), skipped


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class MemoryBasedAttentiveFusion(BaseFusion):
    """Memory-Based Attentive Fusion (MBAF), a drop-in for concatenation.

    Fuses modality vectors `x_1 ... x_n` (`(batch, d_i)`) through a memory
    of `k` slots that stores fused representations seen during training,
    and returns a tensor of the concatenation's width `l = sum(d_i)`, so it
    replaces a concatenation layer without changing the rest of a model.

    For each sample (Priyasad et al. 2021, section 3):

        x = x_1 ⊕ ... ⊕ x_n                                     (Eq. 1)
        z = softmax(N(f_r(x)) M^T)       over the k slots        (Eq. 2)
        m = z M                          read                    (Eq. 3)
        b = f_c(x ⊕ m)                   MLP, ReLU               (Eq. 4)
        c = b                            (Eq. 5-6, see below)    (Eq. 5-6)
        h = ReLU(c w)                                            (Eq. 7)
        r = argmax z;  M_r <- h          erase slot r, write h   (Eq. 8)
        o = x + h                        axis-wise sum           (Eq. 9)

    **Read scores (Eq. 2), `read_similarity=`.** The paper: "generate a
    key vector (z_t) for a corresponding memory slot which is semantically
    associated with x_t ... The slot location r is defined by z_t which is
    obtained by attending over memory slots", `z = softmax(f_r(x)^T M)`.
    Measured on the shipped avdigits model trained with the dot product
    (JAX, 179 test inputs): every input read slot 7. The encodings are ReLU
    outputs, so the keys `f_r(x)` share one direction (mean cosine 0.93 to
    the mean key; 0.87-0.99 already at initialization on the three bundled
    tasks), the input-independent part `mean_key . M_j` decides the winner,
    and with keys of norm ~31 and slots of norm ~20 the scores span ~250,
    a one-hot softmax that passes no gradient to `f_r`. The readings:

    * `"centered_dot"` (default): `N` standardizes the keys feature by
      feature, as a `BatchNormalization` without scale and offset (batch
      statistics in training, moving averages in inference; keys that are
      not finite are left out of the statistics), then Eq. 2's dot product.
      The input-independent part of the keys is removed, so the slot read
      depends on how the input differs from the others ("semantically
      associated with x_t"). In training the reads of a batch depend on
      the batch's statistics; a training batch of one sample reads
      uniformly.
    * `"dot"`: Eq. 2 as printed, `N` the identity (the behaviour before
      this option existed).
    * `"scaled"`: the dot product divided by `sqrt(l)` (scaled dot-product
      attention); `"cosine"`: `beta cos(f_r(x), M_j)` with a learned
      sharpness `beta` (starts at 10), the content addressing of
      memory-augmented networks (Graves et al. 2014), which bounds the
      scores; `"centered_scaled"`, `"centered_cosine"`: the same on
      standardized keys.

    Measured (JAX, `mmfusion train`'s data and Adam 1e-3, early stopping
    on validation accuracy, seed 0; slots read = slots that are the
    largest read weight of at least one test input, top = share of test
    inputs on the most read slot):

    * avdigits: `"dot"` (shipped model) 1 slot read, top 100%, test
      accuracy 1.000; `"centered_dot"` 16 read, top 18%, 28 of 30
      distinct, read entropy 0.09, accuracy 0.994; `"centered_scaled"` 11
      read, top 34%, entropy 0.66, 1.000.
    * digits-views: `"dot"` 16 read, top 27%, entropy 0.38, 0.981;
      `"scaled"` 3, 76%, 0.61, 0.959; `"cosine"` 12, 48%, 0.87, 0.948;
      `"centered_scaled"` 17, 27%, 0.82, 0.981; `"centered_cosine"` 20,
      22%, 0.86, 0.970.
    * speech-text (40 epochs at most): `"centered_dot"` 5 read, top 65%,
      26 of 30 distinct, entropy 0.94, accuracy 0.676: the centered read
      does not fix this task (its slots shrink to norm 2.8).

    **Write (Eq. 8), `write=`.** The paper's prose: "the resulting feature
    vector, h_t, is written to the selected slot location of the memory,
    r, using the pre-calculated key, z_t ... First the data in the
    corresponding slot is erased and then it is replaced with h_t".

    * `"selected"` (default): the slot `r = argmax z` of the sample is
      erased and replaced by `h`, the other slots are untouched, i.e.
      Eq. 8 with the one-hot of `argmax z` as the key. The write carries no
      gradient in either mode, so nothing is lost by the hard choice.
    * `"soft"`: Eq. 8 as printed, with the soft key `z`:
      `M <- M ⊙ (1 - z 1^T) + z h^T`, every sample written into every slot
      in proportion to `z` (the behaviour before this option existed).
      With near-uniform `z` every write pulls all slots towards the same
      `h`, and identical slots are a fixed point (identical rows give a
      uniform `z`, which keeps them identical): measured, the memory
      collapses (see "Defaults" below).

    **Composition attention (Eq. 5-6), `composition_attention=`.** The
    paper: `alpha_i = exp(b^T b_hat) / sum_i exp(b^T b_hat)` (Eq. 5),
    `c = sum_i alpha_i b` (Eq. 6), "where alpha and b_hat are the
    attention score and attentive vector", applied "to filter
    uninformative features from the composition". As printed the score
    does not depend on `i`; the readings:

    * `"literal"` (default): Eq. 5-6 as printed: `alpha_i = 1/u` for every
      feature and `c = sum_i alpha_i b = b`. No attention weights; the
      composition is `h = ReLU(b w)`.
    * `"softmax_features"`: `b_hat = b W_a` (a `u x u` matrix),
      `alpha = softmax(b ⊙ b_hat)` over the features and `c = alpha ⊙ b`
      (`FeatureSelfAttention`). `c` is then about `u` times smaller than
      `b`: `h` shrinks, the memory rows shrink, the read logits
      `f_r(x) M^T` go to zero and `z` goes uniform; with a near one-hot
      `alpha` every `h` is also collinear. The behaviour before this option
      existed; its memory collapses (see "Defaults").
    * `"rescaled"`: as `"softmax_features"` with `c = u alpha ⊙ b`, so that
      uniform attention is the identity.
    * `"vector"`: the reading that matches the paper's parameter counts.
      Table 3 gives MBAF − NF = `3 l^2 + (q + 2) l` exactly for every
      experiment with a known batch size `q` (F-II/III: l = 6848, q = 64;
      F-IV-VI: l = 1024, q = 32; checked in the tests). `3 l^2` is `f_r`
      (`l x l`) plus `f_c` (`2l x l`): there is no room for a `u x u`
      matrix `W_a` nor an `l x l` transform `w`, so "the attentive vector"
      `b_hat` is a learned vector and `w` ("transformed ... with weight
      w_t") scales element-wise: `alpha = softmax(b ⊙ b_hat)`,
      `c = u alpha ⊙ b`, `h = ReLU(c ⊙ w)`. `b_hat` starts at zero and `w`
      at one, so the layer starts as the literal reading (`c = b`,
      `h = b`) and learns its attention from there. Its trainable weights
      are `3 l^2 + 3 l` with the default centered keys (`3 l^2 + 4 l`
      with `f_r`'s bias; the memory adds `k l` non-trainable ones); the
      remaining `(q - 1) l` of the paper's count is not explained by the
      text (it grows with the batch size, like the paper's Eq. 10).
      Needs `composition_units=None`.

    **Defaults** (chosen by measurement: `write="selected"`,
    `composition_attention="literal"`), trained with `mmfusion train`'s
    recipe on JAX (test split; health = distinct slots of 30, mean read
    entropy / log k):

    * digits-views, seeds 0-2: old readings (soft, `softmax_features`)
      0 of 30 distinct slots and uniform reads (1.00) in every seed, test
      accuracy 0.972 ± 0.002; defaults 30 of 30, entropy 0.36-0.43,
      0.957 ± 0.037 (one seed stopped early at 0.915).
    * speech-text, seeds 0-2: old 1, 1, 0 of 30, entropy 0.99-1.00,
      accuracy 0.849 ± 0.005; defaults 25, 25, 10 of 30, entropy 0.11,
      0.82, 0.54, accuracy 0.846 ± 0.035 (0.870, 0.861, 0.806). Only
      seed 0 meets the health bar (80% distinct, entropy <= 0.8): the
      defaults are much healthier than the old readings but do not yet
      keep the memory alive on every speech-text run.
    * concatenation on digits-views, seeds 0-2: 0.973 ± 0.002.
    * avdigits, seed 0: old 4 of 30, 0.96, 1.000; defaults 28 of 30,
      0.00, 1.000.

    `"vector"` with the selected write also keeps the memory alive (seed 0:
    28 of 30 on digits-views, 30 of 30 on speech-text) but measured lower
    accuracy (0.956 and 0.787); `"rescaled"` with the selected write
    diverged (0.733 on digits-views, stopped after 6 epochs). These
    figures were measured with `read_similarity="dot"`: distinct slots
    and a low read entropy did not make the read depend on the input (the
    avdigits model read one slot for every test input, the speech-text one
    92% of them), which `read_similarity="centered_dot"` addresses (see
    "Read scores"). Models saved before these options existed load with
    the old readings (their configs lack the keys), so they predict
    exactly as before; models saved before `read_similarity` existed load
    with `"dot"`.

    **Non-finite writes.** A sample whose key `z` or vector `h` holds NaN
    or inf writes nothing (the memory keeps its last finite value; the
    other samples of the batch write as usual), and should a batch's
    result still be non-finite the whole write is skipped. Skipped sample
    writes are counted in the non-trainable variable `skipped_writes`
    (a float scalar, summed over the memories; saved with the model). A
    zero-size training batch is an error.

    **Memory state.** `M` is a non-trainable variable (`memory`, or
    `memory_0 ... memory_{n-1}` with one memory per modality), initialized
    from N(0, 1) with `seed`. It is written only when the layer is called
    with `training=True` and is trainable, i.e. in `fit`, never in
    `predict` or `evaluate`, so no test data leaks into it. It is saved in
    `.keras` files and checkpoints like any weight. Gradients flow through
    the read and the composition into `f_r`, `f_c`, the attention and `w`;
    the written memory is state and carries no gradient.

    **Batch semantics.** Every sample of a batch reads the memory as it was
    at the start of the batch (Eq. 2-3 use `M_{t-1}` of the batch). The
    writes of Eq. 8 are then applied once per sample, in sample order,
    exactly as a loop over the batch would, using a closed form with a
    reverse cumulative product of `(1 - z)` over the batch (see
    `batch_memory_write`). Shuffle training data, as usual, so the order is
    not informative.

    **Other readings of the paper.** `f_r` maps `x` to the memory width
    `l`, a `Dense(l)`, so that `f_r(x) M^T` scores every slot. Its bias
    (`read_projection_bias=None`: only for the readings that keep it) is
    used with `"dot"`, `"scaled"` and `"cosine"`; the centered readings
    subtract the mean key feature by feature, so a bias `b_r` cancels
    exactly (`f_r(x) - mean f_r = (x - mean x) W_r`: in training it gets
    no gradient, only float rounding) and `f_r` is `x W_r` without it.
    Files saved when the centered readings still had the bias (their
    configs lack `read_projection_bias`) load with it, predicting as
    before.
    `f_c` is a `Dense(composition_units)` with ReLU on `x ⊕ m`
    (`composition_units` defaults to `l`). Except in the `"vector"`
    reading, `w` of Eq. 7 is a `Dense(l)` without bias. The trainable
    weights are `l^2 + 2 l u + u + u l` (`"literal"`, centered keys; `+ l`
    with `f_r`'s bias), plus `u^2` (`"softmax_features"`, `"rescaled"`),
    or `3 l^2 + 3 l` (`"vector"`);
    the paper's Eq. 10 count (`2 l^2 + (q + 1) l`, `q` the batch size)
    does not match its own Table 3 (see `"vector"` above).

    **Ablations** (section 6). `read="cross"` composes and writes from the
    swapped concatenation `x_s = x_n ⊕ ... ⊕ x_1` (Eq. 11-12) while the
    key is still computed from `x`; the output is still `x + h`.
    `memory="per_modality"` gives every modality its own memory and
    parameters (Eq. 13, `x = x_i`); the outputs `x_i + h_i` are
    concatenated.

    **Data parallel.** The memory is declared with `aggregation="mean"`.
    Under `keras.distribution.DataParallel` (JAX) the train step is one SPMD
    program over the global batch, so the memory update is the same as on
    one device with that global batch (the cumulative product runs across
    the sharded batch axis) and the replicated memory stays consistent.
    Under `tf.distribute.MirroredStrategy` every replica computes the write
    of its local batch slice and the assignments are averaged across
    replicas (`aggregation="mean"`): consistent, but not the sequential
    write of the global batch.

    Args:
        memory_slots: int, the number of slots `k`. Default 30 (the paper
            sweeps 10-100, Table 4).
        read: `"self"` (Eq. 1-9) or `"cross"` (Eq. 11-12). Default "self".
        memory: `"fused"` (one memory over the concatenation) or
            `"per_modality"` (Eq. 13). Default "fused".
        composition_units: width `u` of `f_c` and the attention; default
            None, the memory width (`l`, or `d_i` per modality).
        kernel_initializer: initializer of the trainable kernels. Default
            "glorot_uniform" (the paper uses a uniform distribution).
        seed: int or None, seed of the memory initializer.
        write: `"selected"` (default: erase and replace the slot of
            `argmax z`) or `"soft"` (Eq. 8 with the soft key `z`).
        composition_attention: reading of Eq. 5-6: `"literal"` (default,
            `c = b`), `"softmax_features"` (`c = alpha ⊙ b`, the old
            behaviour), `"rescaled"` (`c = u alpha ⊙ b`) or `"vector"`
            (vector `b_hat` and element-wise `w`, Table 3's counts).
        read_similarity: scores of Eq. 2: `"centered_dot"` (default,
            standardized keys), `"dot"` (as printed, the old behaviour),
            `"scaled"`, `"cosine"`, `"centered_scaled"` or
            `"centered_cosine"` (see "Read scores").
        read_projection_bias: bool or None, whether `f_r` has a bias.
            None (default): only when the keys are not centered (with the
            `"centered_*"` readings the bias cancels and would be a dead
            weight). True reproduces files saved before this option.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.
        training: bool; the memory is written only when True.

    Returns:
        A tensor of shape `(batch, sum(d_i))`.

    Example:

    >>> import keras, numpy as np
    >>> from mmfusion_keras.layers import MemoryBasedAttentiveFusion
    >>> audio, text = keras.Input((16,)), keras.Input((8,))
    >>> fused = MemoryBasedAttentiveFusion(memory_slots=10, seed=1)([audio, text])
    >>> model = keras.Model([audio, text], keras.layers.Dense(4)(fused))
    >>> tuple(fused.shape)
    (None, 24)
    >>> report = model.layers[2].inspect([np.ones((2, 16)), np.ones((2, 8))])
    >>> report["read_weights"].shape, report["memory"].shape
    ((2, 10), (10, 24))

    Reference:
        Priyasad, Fernando, Denman, Sridharan, Fookes, "Memory Based Fusion
        for Multi-modal Deep Learning", Information Fusion 68 (2021),
        section 3 (Eq. 1-9) and section 6 (Eq. 11-13).
    """

    def __init__(
        self,
        memory_slots=30,
        read="self",
        memory="fused",
        composition_units=None,
        kernel_initializer="glorot_uniform",
        seed=None,
        write="selected",
        composition_attention="literal",
        read_similarity="centered_dot",
        read_projection_bias=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if read_projection_bias is not None and not isinstance(
            read_projection_bias, bool
        ):
            raise ValueError(
                "Received an invalid value for argument `read_projection_bias`, "
                "expected True, False or None (None: a bias only for the "
                "readings that do not center the keys). "
                f"Received: read_projection_bias={read_projection_bias!r}"
            )
        if read_similarity not in _READ_SIMILARITIES:
            raise ValueError(
                "Received an invalid value for argument `read_similarity`, "
                f"expected one of {_READ_SIMILARITIES}. "
                f"Received: read_similarity={read_similarity!r}"
            )
        if write not in _WRITE_MODES:
            raise ValueError(
                "Received an invalid value for argument `write`, expected one "
                f"of {_WRITE_MODES}. Received: write={write!r}"
            )
        if composition_attention not in _COMPOSITION_READINGS:
            raise ValueError(
                "Received an invalid value for argument `composition_attention`, "
                f"expected one of {_COMPOSITION_READINGS}. "
                f"Received: composition_attention={composition_attention!r}"
            )
        if composition_attention == "vector" and composition_units is not None:
            raise ValueError(
                "`composition_attention='vector'` multiplies `c` element-wise by "
                "a vector `w` (Eq. 7), so `c` must have the memory width: "
                "expected composition_units=None. "
                f"Received: composition_units={composition_units}"
            )
        if not isinstance(memory_slots, int) or memory_slots < 1:
            raise ValueError(
                "Received an invalid value for argument `memory_slots`, "
                f"expected a positive integer. Received: memory_slots={memory_slots}"
            )
        if read not in _READ_MODES:
            raise ValueError(
                "Received an invalid value for argument `read`, expected one "
                f"of {_READ_MODES}. Received: read={read!r}"
            )
        if memory not in _MEMORY_MODES:
            raise ValueError(
                "Received an invalid value for argument `memory`, expected one "
                f"of {_MEMORY_MODES}. Received: memory={memory!r}"
            )
        if read == "cross" and memory == "per_modality":
            raise ValueError(
                "`read='cross'` swaps modalities inside one fused memory and "
                "cannot be combined with `memory='per_modality'`. Received: "
                f"read={read!r}, memory={memory!r}"
            )
        if composition_units is not None and (
            not isinstance(composition_units, int) or composition_units < 1
        ):
            raise ValueError(
                "Received an invalid value for argument `composition_units`, "
                "expected a positive integer or None. "
                f"Received: composition_units={composition_units}"
            )
        self.memory_slots = memory_slots
        self.read = read
        self.memory = memory
        self.composition_units = composition_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.write = write
        self.composition_attention = composition_attention
        self.read_similarity = read_similarity
        if read_projection_bias is None:
            # Centered keys: a bias of f_r cancels in the standardization.
            read_projection_bias = not read_similarity.startswith("centered")
        self.read_projection_bias = read_projection_bias

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        self._modality_widths = [s[-1] for s in shapes]
        if self.memory == "fused":
            unit_widths = [sum(self._modality_widths)]
        else:
            unit_widths = list(self._modality_widths)
        self.read_projections = []
        self.composers = []
        self.attentions = []
        self.transforms = []
        self.memories = []
        self.read_sharpness = []
        self.key_normalizations = []
        for j, width in enumerate(unit_widths):
            units = self.composition_units or width
            suffix = "" if len(unit_widths) == 1 else f"_{j}"
            read_projection = keras.layers.Dense(
                width,
                use_bias=self.read_projection_bias,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"read_projection{suffix}",
            )
            read_projection.build((None, width))
            composer = keras.layers.Dense(
                units,
                activation="relu",
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"composer{suffix}",
            )
            composer.build((None, 2 * width))
            reading = self.composition_attention
            attention = None
            if reading != "literal":
                attention = FeatureSelfAttention(
                    kernel_initializer=self.kernel_initializer,
                    projection="vector" if reading == "vector" else "matrix",
                    rescale=reading in ("rescaled", "vector"),
                    dtype=self.dtype_policy,
                    name=f"composition_attention{suffix}",
                )
                attention.build((None, units))
            if reading == "vector":  # Eq. 7, element-wise w (Table 3)
                transform = self.add_weight(
                    shape=(width,), name=f"transform{suffix}", initializer="ones"
                )
            else:
                transform = keras.layers.Dense(
                    width,
                    use_bias=False,
                    kernel_initializer=self.kernel_initializer,
                    dtype=self.dtype_policy,
                    name=f"transform{suffix}",
                )
                transform.build((None, units))
            memory_seed = None if self.seed is None else self.seed + j
            memory = self.add_weight(
                shape=(self.memory_slots, width),
                name=f"memory{suffix}",
                initializer=keras.initializers.RandomNormal(
                    mean=0.0, stddev=1.0, seed=memory_seed
                ),
                trainable=False,
                autocast=False,
                aggregation="mean",
            )
            self.read_projections.append(read_projection)
            self.composers.append(composer)
            self.attentions.append(attention)
            self.transforms.append(transform)
            self.memories.append(memory)
            if self.read_similarity.startswith("centered"):
                norm = keras.layers.BatchNormalization(
                    center=False,
                    scale=False,
                    dtype=self.dtype_policy,
                    name=f"key_normalization{suffix}",
                )
                norm.build((None, width))
                self.key_normalizations.append(norm)
            if self.read_similarity in ("cosine", "centered_cosine"):
                self.read_sharpness.append(
                    self.add_weight(
                        shape=(),
                        name=f"read_sharpness{suffix}",
                        initializer=keras.initializers.Constant(10.0),
                    )
                )
        # Created after the memories so that files saved before it existed
        # (memories only) still map onto the first variables.
        self.skipped_writes = self.add_weight(
            shape=(),
            name="skipped_writes",
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )

    def _unit_inputs(self, inputs):
        """The `(key input, composition input)` pair of every memory unit."""
        inputs = list(inputs)
        if self.memory == "per_modality":
            return [(x, x) for x in inputs]  # Eq. 13
        x = ops.concatenate(inputs, axis=-1)  # Eq. 1
        if self.read == "cross":
            return [(x, ops.concatenate(inputs[::-1], axis=-1))]  # Eq. 11
        return [(x, x)]

    def _forward(self, inputs, training=False):
        """Read and compose for every memory unit. No state is changed."""
        results = []
        for j, (x, x_compose) in enumerate(self._unit_inputs(inputs)):
            # On PyTorch, assign() is in place: read through a copy so that
            # autograd never sees the tensor that the write overwrites.
            state = ops.copy(self.memories[j])
            memory = ops.cast(state, x.dtype)
            keys = self.read_projections[j](x)
            z = ops.softmax(
                self._read_logits(keys, memory, j, training), axis=-1
            )  # Eq. 2
            m = ops.matmul(z, memory)  # Eq. 3
            b = self.composers[j](ops.concatenate([x_compose, m], axis=-1))  # Eq. 4/12
            if self.attentions[j] is None:  # literal Eq. 5-6: alpha = 1/u, c = b
                c = b
                alpha = ops.ones_like(b) / ops.cast(ops.shape(b)[-1], b.dtype)
            else:
                c, alpha = self.attentions[j](b, return_attention_scores=True)
            if self.composition_attention == "vector":
                h = ops.relu(c * ops.cast(self.transforms[j], c.dtype))  # Eq. 7
            else:
                h = ops.relu(self.transforms[j](c))  # Eq. 7
            results.append(
                {
                    "input": x,
                    "read_weights": z,
                    "attention": alpha,
                    "written": h,
                    "state": state,
                    "output": x + h,  # Eq. 9
                }
            )
        return results

    def _read_logits(self, keys, memory, j, training=False):
        """The scores `f_r(x) M^T` of Eq. 2, in the `read_similarity` reading."""
        if self.read_similarity.startswith("centered"):
            # Standardize the keys feature by feature (batch statistics in
            # training, moving ones in inference). Non-finite keys are left
            # out of the statistics (their writes are skipped anyway).
            finite = ops.all(ops.isfinite(keys), axis=-1)
            keys = ops.where(finite[:, None], keys, 0.0)
            keys = self.key_normalizations[j](keys, training=training, mask=finite)
        if self.read_similarity.endswith("dot"):
            return ops.matmul(keys, ops.transpose(memory))
        if self.read_similarity.endswith("scaled"):
            width = ops.cast(ops.shape(memory)[-1], keys.dtype)
            return ops.matmul(keys, ops.transpose(memory)) / ops.sqrt(width)
        eps = 1e-6
        keys = keys / (ops.norm(keys, axis=-1, keepdims=True) + eps)
        memory = memory / (ops.norm(memory, axis=-1, keepdims=True) + eps)
        sharpness = ops.cast(self.read_sharpness[j], keys.dtype)
        return sharpness * ops.matmul(keys, ops.transpose(memory))

    def call(self, inputs, training=None):
        if training and self.trainable and inputs[0].shape[0] == 0:
            raise ValueError(
                "MemoryBasedAttentiveFusion cannot write a zero-size batch into "
                "its memory: expected a training batch of at least 1 sample. "
                f"Received inputs of shapes {[tuple(x.shape) for x in inputs]}."
            )
        results = self._forward(inputs, training=training)
        if training and self.trainable:
            skipped = ops.zeros((), "float32")
            # A sample with a non-finite input never writes, whatever the
            # backend's activations make of it.
            valid = None
            for x in inputs:
                ok = ops.all(ops.isfinite(ops.reshape(x, (ops.shape(x)[0], -1))), -1)
                valid = ok if valid is None else ops.logical_and(valid, ok)
            for memory, r in zip(self.memories, results):
                z = ops.stop_gradient(ops.cast(r["read_weights"], memory.dtype))
                h = ops.stop_gradient(ops.cast(r["written"], memory.dtype))
                new_memory, n = safe_memory_write(
                    r["state"], z, h, self.write, valid=valid
                )
                memory.assign(new_memory)  # Eq. 8
                skipped = skipped + n
            self.skipped_writes.assign(ops.copy(self.skipped_writes) + skipped)
        return ops.concatenate([r["output"] for r in results], axis=-1)

    def inspect(self, inputs):
        """What the layer does with `inputs`, without changing the memory.

        Runs the read and composition in inference mode and returns NumPy
        arrays. With one fused memory the values are arrays; with
        `memory="per_modality"` each value is a list with one array per
        modality.

        Args:
            inputs: list of modality arrays `(batch, d_i)` (the inputs of
                this layer, e.g. the encoders' outputs; see
                `mmfusion_keras.inspection.inspect_fusion` to start from a
                model's inputs).

        Returns:
            dict with `read_weights` `(batch, k)` (Eq. 2), `attention`
            `(batch, u)` (Eq. 5; `1/u` everywhere with the literal
            reading), `written` `(batch, l)` (`h`, Eq. 7),
            `output` `(batch, l)` (Eq. 9), `memory` `(k, l)` (the current
            memory), and `memory_after_write` `(k, l)`: what the memory
            would become if this batch were a training batch (Eq. 8; not
            applied).
        """
        inputs = [ops.convert_to_tensor(x, dtype=self.compute_dtype) for x in inputs]
        self._validate_call_inputs(inputs)
        if not self.built:
            self.build([tuple(x.shape) for x in inputs])
        results = self._forward(inputs)
        report = {
            key: [ops.convert_to_numpy(r[key]) for r in results]
            for key in ("read_weights", "attention", "written", "output")
        }
        report["memory"] = [ops.convert_to_numpy(m) for m in self.memories]
        report["memory_after_write"] = [
            ops.convert_to_numpy(
                safe_memory_write(
                    r["state"],
                    ops.cast(r["read_weights"], "float32"),
                    ops.cast(r["written"], "float32"),
                    self.write,
                )[0]
            )
            for r in results
        ]
        if self.memory == "fused":
            report = {key: value[0] for key, value in report.items()}
        return report

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], sum(s[-1] for s in shapes))

    def get_config(self):
        return {
            **super().get_config(),
            "memory_slots": self.memory_slots,
            "read": self.read,
            "memory": self.memory,
            "composition_units": self.composition_units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
            "write": self.write,
            "composition_attention": self.composition_attention,
            "read_similarity": self.read_similarity,
            "read_projection_bias": self.read_projection_bias,
        }

    @classmethod
    def from_config(cls, config):
        # A config saved before these options existed meant the old readings,
        # not today's defaults: keep such models predicting as they did.
        config = {**_OLD_DEFAULTS, **config}
        return super().from_config(config)

    def load_own_variables(self, store):
        # Files saved before `skipped_writes` existed hold the memories only.
        if not self._load_own_variables_without(store, self.skipped_writes):
            super().load_own_variables(store)
