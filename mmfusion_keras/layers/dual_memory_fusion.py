import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion
from mmfusion_keras.layers.compact_bilinear_pooling import CompactBilinearPooling
from mmfusion_keras.layers.feature_self_attention import FeatureSelfAttention
from mmfusion_keras.layers.top_k_pooling import TopKPooling

_EPSILON = 1e-12
_MODALITIES = ("audio", "text")
WRITER_SELECTIONS = ("soft", "hard", "straight_through")
WRITER_BLOCKS = ("post_norm", "rezero")
GUMBEL_SCALES = ("similarity_spread", "unit")
EMBEDDING_NORMS = ("memory", "standardize", "none")
SIMILARITY_LOSSES = ("squared_cosine", "cosine")
SIMILARITY_GRADIENTS = ("writer", "network")
# The writer and reader of the layer's first versions (configs without
# these keys).
LEGACY_WRITER = {
    "writer_selection": "soft",
    "writer_temperature": 1.0,
    "writer_block": "post_norm",
    "gumbel_scale": "unit",
    "norm_momentum": 0.99,
    "norm_epsilon": 1e-3,
    "embedding_norm": "none",
    "variance_floor": 0.0,
    "similarity_loss": "cosine",
    "similarity_gradient": "network",
}


def mean_pairwise_cosine(memory, squared=False):
    """Mean cosine similarity over the pairs of slots `i < j` of a memory.

    One term of Eq. 4: with `S` the `(n, n)` cosine-similarity matrix of the
    slots, the mean of its upper triangle without the diagonal,
    `sum_{i<j} S_ij / (n (n - 1) / 2)`, which equals
    `(sum(S) - trace(S)) / (n (n - 1))` since `S` is symmetric. With
    `squared=True` the mean of `S_ij ** 2` instead (zero only when the
    slots are orthogonal; see `DualMemoryFusion`'s `similarity_loss`).
    Zero for `n = 1`.

    Args:
        memory: `(n, d)` tensor.
        squared: bool, average the squared cosines.

    Returns:
        A scalar tensor.
    """
    memory = ops.convert_to_tensor(memory)
    n = memory.shape[0]
    unit = memory * ops.rsqrt(
        ops.sum(ops.square(memory), axis=-1, keepdims=True) + _EPSILON
    )
    similarity = ops.matmul(unit, ops.transpose(unit))
    if squared:
        similarity = ops.square(similarity)
    off_diagonal = ops.sum(similarity) - ops.trace(similarity)
    return off_diagonal / max(n * (n - 1), 1)  # Eq. 4


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class DualMemoryFusion(BaseFusion):
    """Dual Memory Fusion: audio and text memories read across modalities.

    Fuses an audio embedding `x_a` and a text embedding `x_t`
    (`(batch, d)` each) with two memories, `M_a` (`n x d`) and `M_t`
    (`n x d`), that store what the layer saw during training. Three
    sub-modules (Priyasad et al. 2023, section 2.2):

    **Reader** (Eq. 1-2). The audio embedding reads the *text* memory:

        s     = x_a M_t^T                        slot similarities   (Eq. 1)
        tau   = clip(|s w + b|, 1e-4, tau_max)   learned temperature (Eq. 1)
        z     = softmax((s + g) / tau)           Gumbel-softmax      (Eq. 2)
        x_a,t = z M_t                            read                (Eq. 2)

    with `g = -log(-log(u))`, `u ~ U(0, 1)` drawn from the layer's
    `SeedGenerator`. Symmetrically the text embedding reads the audio
    memory: `x_t,a` from `x_t`, `M_a` and its own temperature Dense.

    **Composer** (Eq. 3). One shared `CompactBilinearPooling` fuses
    `(x_a, x_a,t)` and `(x_t,a, x_t)` (audio side first in both);
    each pooled vector goes through its own `FeatureSelfAttention` and
    `BatchNormalization`, and the output is their average
    `x_f = (BN_1(att_1(x_p1)) + BN_2(att_2(x_p2))) / 2`.

    **Writer** (training only). For each modality, the memory and the
    batch's embeddings are stacked along the slot axis (`(n + m) x d`),
    passed through one transformer encoder block (multi-head self-attention
    and a feed-forward network over the `n + m` vectors), and `TopKPooling`
    selects the `k = n` best-scoring vectors, gated by the sigmoid of their
    scores. The result is the new memory `M'`. It feeds the similarity loss
    of this step (Eq. 4),

        L_mem = sum_{l in {a, t}} mean_{i < j} cos(M'_l(i), M'_l(j))^2,

    added with `add_loss` (times `similarity_loss_weight`), and it is
    assigned (without gradient) to the memory variable, so the next step
    reads it. The writer's weights learn only through this loss.

    **Writer readings** (`writer_selection`, `writer_block`). The paper:
    "transformed into a new latent space using a transformer layer which
    learns relationships and dependencies among each vector in the expanded
    memory ... we use the differentiable Top-K pooling layer ... which
    weights and selects the k most salient feature vectors". Measured on a
    clustered two-view task (8 classes, two 32-d Dense encoders, 30 slots,
    batch 32, JAX), the first version of the writer collapsed the memory
    within one epoch, for two reasons:

    - *Selection.* SoftSort at temperature 1 makes every new slot a blend
      of dozens of rows: one write at initialization took the rows from a
      mean pairwise cosine of 0.78 (after the block) to 0.998-0.999, and
      neighbouring scores give near-identical blends (0 to 5 of 30 slots
      distinct after 1-3 epochs). `writer_selection="straight_through"`
      (default) keeps the paper's "selects": the forward pass takes the
      `k` rows themselves (hard top-k), the backward pass SoftSort's
      gradient (at `writer_temperature`), so the scorer still learns from
      Eq. 4. `"hard"`: the hard selection without gradient to the scorer;
      `"soft"`: the first version.
    - *Block.* With the standard post-norm block
      (`LN(h + Attn(h))`, `LN(h + FFN(h))`, `writer_block="post_norm"`),
      the attention at initialization is near uniform (entropy 0.85-0.95
      of uniform over the `n + m` rows), so its output is almost the same
      vector for every row (mean cosine 0.93-0.95) and larger than the
      residual (norm 7.8 against 5.1): one pass takes rows at mean cosine
      0.10 to 0.76. The memory goes through the block at every write, so
      over training it is a stack of thousands of shared-weight attention
      layers, which loses rank (Dong, Cordonnier, Loukas, ICML 2021); and
      identical rows are a fixed point (the block maps them to identical
      rows with identical scores). `writer_block="rezero"` (default)
      multiplies both branches by learned scalars that start at 0
      (Bachlechner et al., "ReZero is all you need", 2021):
      `LN(h + a_1 Attn(h))`, `LN(h + a_2 FFN(h))`, so the block starts as
      the identity (up to layer norm) and the written slots are the
      selected embeddings and memory rows; Eq. 4 decides how much mixing
      the writer learns.

    **Memory state.** The memories are non-trainable variables
    (`memory_audio`, `memory_text`, in `self.memories`), initialized
    Xavier-normal with gain 1 (untruncated normal, std
    `sqrt(2 / (n + d))`), declared with `aggregation="mean"` like MBAF's.
    They are read through a copy (PyTorch's in-place assign) and written
    only when the layer is called with `training=True` and is trainable:
    in `fit`, never in `predict` or `evaluate`, and the Eq. 4 loss is added
    only then. They are saved in `.keras` files like any weight.

    **Readings of the paper.**
    - Eq. 2 writes `log(x_tmp)`, undefined for negative similarities; the
      similarities are used as the logits (the log-softmax of `s`, which
      differs from `s` by a constant that the softmax ignores).
    - Eq. 2 sums over `M_a` while the text says the audio query reads the
      text memory; the text is followed (`x_a,t = z M_t`).
    - The temperature Dense takes `x_tmp`, which has one entry per slot, so
      its weight is `1 x n` (the paper writes `1 x d_a`, equal only when
      `n = d`). One temperature per sample.
    - *Noise scale* (`gumbel_scale`). The paper uses the Gumbel softmax
      "due to its ability to manipulate the distribution of attention
      weights ranging from a one-hot to uniform weighting, by adjusting
      the temperature (τ)". The temperature divides the similarities and
      the noise alike, so it cannot change which of the two decides the
      read: when the similarities spread much less than the standard
      Gumbel noise (standard deviation 1.28), every training read is a
      random slot whatever τ. Measured on speech-text (JAX, the first
      version): the text encoding shrank to norm 0.20 (audio 8.1), the
      learned τ went to 0.036 and the model stayed at chance (0.26-0.31
      test accuracy over seeds). `"similarity_spread"` (default) multiplies
      each sample's noise by the standard deviation of its `n`
      similarities (without gradient), so the sampled slot does not
      depend on the scale of the embeddings and τ sets the one-hot to
      uniform range as the paper says; `"unit"`: standard Gumbel noise
      (the first version).
    - At inference (`training` false) the Gumbel noise is dropped: the read
      is the plain softmax of `s / tau` at the learned temperature, so
      predictions are deterministic.
    - *Temperature range* (`temperature_max`). The paper fixes `tau_max`
      at 10 for its embeddings. How flat a read can get depends on the
      spread of the similarities, not on `tau` alone: with the memory side
      standardized (64-wide on the bundled tasks) a query's similarities
      to the 32 slots spread with a standard deviation of about 3
      (measured on a speech-text model trained with the defaults before),
      and at that spread `tau = 10` gives a read at 0.99 of uniform
      entropy, `tau = 2` one at 0.74. The learned temperatures sat at
      2.5-3.7 (median; up to the cap) and the mean read entropy of a memory
      reached 0.87 of uniform: above 0.8 in 5 of 18 runs (the previous
      defaults and `variance_floor=0.03`, three tasks, three seeds). Default
      2.0: the reader keeps its learned, input-dependent temperature, within
      a range where the read selects among slots; `temperature_max=10` is
      the paper's value.
    - *Similarity loss* (`similarity_loss`, `similarity_gradient`). The
      paper introduces Eq. 4 as a loss "which seeks to achieve
      orthogonality among vectors in the memory block", and prints it as
      the mean cosine similarity of
      the pairs of slots. The mean cosine does not do that: its least
      value for `n` vectors, `-1 / (n - 1)`, is reached by a memory of one
      vector and its negative (slots `v, -v, v, -v, ...`), which is the
      collapse measured on avdigits (seed 2: the audio memory's 32 slots
      one vector and its negative, effective rank 1.1) and on speech-text
      (seed 1 with `temperature_max=2`: 1 of 32 distinct, effective rank
      1.2). `"squared_cosine"` (default) averages the squared cosines
      instead: zero exactly when the slots are orthogonal, 1 for that
      collapsed memory. `"cosine"`: Eq. 4 as printed (what files saved
      before the option load with). The loss is there "to train the writer
      sub-module": with `similarity_gradient="writer"` (default) it trains
      the writer's weights only (the embeddings it stores are taken
      without gradient), with `"network"` (what older files load with) it
      also reaches the encoders through the stored embeddings, pushing
      the embeddings of different inputs apart whatever their class.
    - Eq. 4 divides the upper-triangle sum by `n (n - 1)` while the text
      says "averaging the upper triangle": the mean (`/ (n (n - 1) / 2)`)
      is used; `similarity_loss_weight=0.5` gives Eq. 4 as printed.
    - The paper assigns `M'` "at the beginning of the next iteration"; here
      it is assigned at the end of the step that computed it, which is the
      same memory for the next step.
    - The paper does not describe the transformer block or the top-k
      pooling further; the block is an encoder layer (see "Writer
      readings") and the pooling is gPool (Gao and Ji 2019) with a SoftSort
      selection (Prillo and Eisenschlos 2020), see `TopKPooling`.
    - NaN-safe writes (an addition): a write that would put a NaN or inf
      in any slot of a memory is skipped, that memory keeps its last
      finite value, and the non-trainable counter `skipped_writes` counts
      the skipped memory writes.
    - `.keras` files saved before the writer options existed load with
      the writer they were trained with (`writer_selection="soft"`,
      `writer_temperature=1`, `writer_block="post_norm"`) and
      `skipped_writes` starting at 0; files saved before `gumbel_scale`
      existed load with `"unit"` (inference, which has no noise, is the
      same either way).
    - Composer scale: `FeatureSelfAttention` returns `alpha * b` with
      softmax weights that average `1 / D` (`D = output_dim`), so the
      attended vector is about `D` times smaller than the pooled one and
      `BatchNormalization`'s epsilon (1e-3) swamped its batch variance: the
      features never reached the head (chance accuracy). The attended
      vector is multiplied by `D`, so uniform attention is the identity.
    - Composer batch normalization (`norm_momentum`, `norm_epsilon`).
      The paper: "Each pooled vector is passed through a separate
      self-attention layer ... with batch normalization"; its initializer
      ("Xavier normal distribution with a gain of 1") is PyTorch's
      vocabulary, and PyTorch's `BatchNorm1d` defaults are momentum 0.1
      (0.9 in Keras's convention: the weight of the old moving value) and
      epsilon 1e-5. Those are the defaults. Keras's defaults (0.99, 1e-3),
      which the layer used before, broke it on small data: speech-text
      has 6 training steps per epoch, so after the 9 epochs that early
      stopping allowed the moving variance was still 0.99^54 = 58% of its
      initial 1, while the pooled, attended features vary across inputs
      by a variance of about 3e-4 (below the epsilon too). Inference
      (validation, test) then divided the features by about 0.8 instead
      of 0.02: the fused output was nearly constant (per-feature
      standard deviation 0.01, against about 0.5 with batch statistics) and the model stayed
      at chance on the validation split (test accuracy 0.250) while it
      learned on the training batches. Files saved before the options
      load with Keras's values (their configs lack the keys), predicting
      as before.
    - Memory space (`embedding_norm`, an addition). The speech-text
      encodings are ReLU outputs that share one direction (audio: mean
      pairwise cosine 0.97 at initialization), so a memory written from
      them holds near-copies and a query made of them reads one slot:
      with `"none"` (the embeddings as they come, the paper's text),
      `mmfusion train --task speech-text --fusion dual_memory` (JAX, seed
      0) reached test accuracy 0.741 with the audio memory at 0 of 32
      distinct slots and the audio query on one slot for every test
      input. The paper says what the memory is for: "the information from
      current inputs is integrated with historical information", the
      reader gets "a complementary and semantically related memory
      representation of the other modality". `"memory"` (default) keeps
      the memory operations in a centred space and the composer in the
      embeddings' space, as MBAF's `read_similarity="centered_dot"` does:
      each embedding is standardized feature by feature (batch statistics
      in training, moving ones in inference, no scale or offset,
      non-finite rows left out of the statistics) for the queries of
      Eq. 1 and for what the writer stores; the composer (Eq. 3) pools the
      embedding as it came in with the read mapped back to its
      modality's embedding space, `x_a,t = (z M_t) * sigma_t + mu_t`
      (`M_t` holds standardized text embeddings, so the read is a
      text-embedding-like vector, not a vector around 0). Measured on the
      same run: both memories 32 of 32 distinct, read entropy 0.55 and
      0.67 of uniform, test accuracy 0.759 (3 seeds: 0.781 +- 0.024, both
      memories alive in every seed; `"none"`: 0.728 +- 0.009, the audio
      memory collapsed in every seed). `"standardize"` standardizes
      the embeddings for the composer too (and the reads stay
      standardized): memories alive but test accuracy 0.398 (the composer
      then pools two centred vectors; why that learns less was not
      measured).
      Without the mapping back (reads around 0, raw embeddings pooled; not
      kept as an option) 0.546. `"none"` is the paper's reading, and what
      files saved before the option load with. On avdigits one seed of
      three collapsed the audio memory with `"memory"`: 31 of its 64 ReLU
      features were nearly dead (moving variance under 1e-4), and the
      standardization blew them up into spikes. `variance_floor` keeps
      each feature's variance at least that fraction of the mean variance:
      with 0.03 all three avdigits seeds kept their memories (28-32 of 32
      distinct, read entropy 0.63-0.77). Default 0.03 (with the squared
      similarity loss and `temperature_max=2`, see below and
      docs/dual_memory.md for the 3-seed runs of every bundled task).
    - Composer pooling: `normalize_pooling=True` applies MCB's signed
      square root and L2 normalization to the pooled vectors (the paper
      does not say).
    - `x_a M_t^T` needs `d_a = d_t`. With different widths the layer raises
      a `ValueError`, unless `memory_dim` is set: then `x_a` and `x_t` are
      first projected by their own `Dense(memory_dim)` (an addition to the
      paper, off by default).

    Args:
        memory_slots: int, slots `n` of each memory (paper: 120).
        output_dim: int, width of the compact bilinear pooling and of the
            output. Default 1024 (the paper does not give it).
        memory_dim: int or None. None (default): the memories have the
            inputs' common width `d`. An int: project both inputs to it.
        temperature_max: float, `tau_max` of Eq. 1. Default 2.0 (paper:
            10; see "Temperature range").
        writer_heads: int, attention heads of the writer's transformer.
        writer_intermediate_dim: int or None, width of its feed-forward
            network; None: `2 d`.
        similarity_loss_weight: float, weight of the Eq. 4 memory loss
            (paper: 1).
        normalize_pooling: bool, signed square root and L2 normalization
            of the pooled vectors. Default True.
        kernel_initializer: initializer of the trainable kernels.
        seed: int or None; seeds the memories, the pooling hashes and the
            Gumbel noise.
        writer_selection: `"straight_through"` (default: hard top-k forward,
            SoftSort gradient), `"hard"` or `"soft"` (SoftSort forward, the
            first version). See "Writer readings".
        writer_temperature: positive float, the SoftSort temperature of
            `"soft"` and `"straight_through"`. Default 1.0.
        writer_block: `"rezero"` (default: branches scaled by learned
            scalars starting at 0) or `"post_norm"` (the first version).
        gumbel_scale: `"similarity_spread"` (default: the Gumbel noise of
            each read scaled by the spread of its similarities) or
            `"unit"` (standard Gumbel noise, the first version). See
            "Noise scale".
        norm_momentum: float in (0, 1), momentum of the composer's batch
            normalizations (Keras convention). Default 0.9 (PyTorch's
            `BatchNorm1d` default momentum 0.1); files saved before the
            option load with 0.99 (Keras's default).
        norm_epsilon: float in (0, 1), their epsilon. Default 1e-5
            (PyTorch's); files saved before the option load with 1e-3.
        embedding_norm: `"memory"` (default: the embeddings standardized
            for the reads and the writes, the reads mapped back to the
            embedding space for the composer), `"standardize"` (standardized
            everywhere) or `"none"` (the paper's text). See "Memory space".
        variance_floor: float >= 0. With `embedding_norm` `"memory"` or
            `"standardize"`, each feature's variance in the standardization
            is at least `variance_floor` times the mean variance over the
            features (batch or moving statistics, as the standardization
            uses), so that near-constant features (dead ReLU units) are not
            blown up into spikes. Default 0.03; 0.0 is no floor (what
            files saved before the option load with). See "Memory space".
        similarity_loss: `"squared_cosine"` (default: the mean squared
            cosine of the pairs of slots, zero only for orthogonal slots)
            or `"cosine"` (Eq. 4 as printed; what files saved before the
            option load with). See "Similarity loss".
        similarity_gradient: `"writer"` (default: Eq. 4 trains the writer
            only; the embeddings it stores are taken without gradient) or
            `"network"` (it also reaches the layers that produce the
            embeddings; what files saved before the option load with).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list `[x_a, x_t]` of tensors `(batch, d_a)`, `(batch, d_t)`.
        training: bool; Gumbel noise, memory writes and the Eq. 4 loss only
            when True.

    Returns:
        `x_f`, a tensor of shape `(batch, output_dim)`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import DualMemoryFusion
    >>> layer = DualMemoryFusion(memory_slots=6, output_dim=32, writer_heads=2,
    ...     seed=1)
    >>> x_a, x_t = np.ones((3, 8), "float32"), np.ones((3, 8), "float32")
    >>> tuple(layer([x_a, x_t]).shape)
    (3, 32)
    >>> report = layer.inspect([x_a, x_t])
    >>> report["read_weights"][0].shape, report["memory"][1].shape
    ((3, 6), (6, 8))

    Reference:
        Priyasad, Fernando, Sridharan, Denman, Fookes, "Dual Memory Fusion
        for Multimodal Speech Emotion Recognition", Interspeech 2023,
        section 2.2 (Eq. 1-3) and section 2.3 (Eq. 4). Gumbel-softmax:
        Jang, Gu, Poole, ICLR 2017, Eq. 2. Top-k pooling: Gao, Ji, "Graph
        U-Nets", ICML 2019, Eq. 2.
    """

    min_modalities = 2
    max_modalities = 2

    def __init__(
        self,
        memory_slots=120,
        output_dim=1024,
        memory_dim=None,
        temperature_max=2.0,
        writer_heads=4,
        writer_intermediate_dim=None,
        similarity_loss_weight=1.0,
        normalize_pooling=True,
        kernel_initializer="glorot_uniform",
        seed=None,
        writer_selection="straight_through",
        writer_temperature=1.0,
        writer_block="rezero",
        gumbel_scale="similarity_spread",
        norm_momentum=0.9,
        norm_epsilon=1e-5,
        embedding_norm="memory",
        variance_floor=0.03,
        similarity_loss="squared_cosine",
        similarity_gradient="writer",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if similarity_gradient not in SIMILARITY_GRADIENTS:
            raise ValueError(
                "Received an invalid value for argument `similarity_gradient`, "
                f"expected one of {SIMILARITY_GRADIENTS}. "
                f"Received: similarity_gradient={similarity_gradient!r}"
            )
        self.similarity_gradient = similarity_gradient
        if similarity_loss not in SIMILARITY_LOSSES:
            raise ValueError(
                "Received an invalid value for argument `similarity_loss`, "
                f"expected one of {SIMILARITY_LOSSES}. "
                f"Received: similarity_loss={similarity_loss!r}"
            )
        self.similarity_loss = similarity_loss
        if (
            isinstance(variance_floor, bool)
            or not isinstance(variance_floor, (int, float))
            or not variance_floor >= 0
        ):
            raise ValueError(
                "Received an invalid value for argument `variance_floor`, "
                "expected a number >= 0. "
                f"Received: variance_floor={variance_floor!r}"
            )
        self.variance_floor = float(variance_floor)
        if embedding_norm not in EMBEDDING_NORMS:
            raise ValueError(
                "Received an invalid value for argument `embedding_norm`, "
                f"expected one of {EMBEDDING_NORMS}. "
                f"Received: embedding_norm={embedding_norm!r}"
            )
        self.embedding_norm = embedding_norm
        for name, value in (
            ("norm_momentum", norm_momentum),
            ("norm_epsilon", norm_epsilon),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < 1
            ):
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    f"a number between 0 and 1 (exclusive). Received: {name}={value!r}"
                )
        self.norm_momentum = float(norm_momentum)
        self.norm_epsilon = float(norm_epsilon)
        if gumbel_scale not in GUMBEL_SCALES:
            raise ValueError(
                "Received an invalid value for argument `gumbel_scale`, expected "
                f"one of {GUMBEL_SCALES}. Received: gumbel_scale={gumbel_scale!r}"
            )
        self.gumbel_scale = gumbel_scale
        for name, value, allow_none in (
            ("memory_slots", memory_slots, False),
            ("output_dim", output_dim, False),
            ("memory_dim", memory_dim, True),
            ("writer_heads", writer_heads, False),
            ("writer_intermediate_dim", writer_intermediate_dim, True),
        ):
            if value is None and allow_none:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                expected = "a positive integer" + (" or None" if allow_none else "")
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected "
                    f"{expected}. Received: {name}={value!r}"
                )
        if not isinstance(temperature_max, (int, float)) or temperature_max <= 1e-4:
            raise ValueError(
                "Received an invalid value for argument `temperature_max`, "
                "expected a number greater than the minimum temperature 1e-4. "
                f"Received: temperature_max={temperature_max!r}"
            )
        if (
            not isinstance(similarity_loss_weight, (int, float))
            or similarity_loss_weight < 0
        ):
            raise ValueError(
                "Received an invalid value for argument "
                "`similarity_loss_weight`, expected a non-negative number. "
                f"Received: similarity_loss_weight={similarity_loss_weight!r}"
            )
        if writer_selection not in WRITER_SELECTIONS:
            raise ValueError(
                "Received an invalid value for argument `writer_selection`, "
                f"expected one of {list(WRITER_SELECTIONS)}. "
                f"Received: writer_selection={writer_selection!r}"
            )
        if writer_block not in WRITER_BLOCKS:
            raise ValueError(
                "Received an invalid value for argument `writer_block`, "
                f"expected one of {list(WRITER_BLOCKS)}. "
                f"Received: writer_block={writer_block!r}"
            )
        if (
            isinstance(writer_temperature, bool)
            or not isinstance(writer_temperature, (int, float))
            or not 0 < writer_temperature < float("inf")
        ):
            raise ValueError(
                "Received an invalid value for argument `writer_temperature`, "
                "expected a positive finite number (use "
                "`writer_selection='hard'` for no relaxation). "
                f"Received: writer_temperature={writer_temperature!r}"
            )
        self.writer_selection = writer_selection
        self.writer_temperature = float(writer_temperature)
        self.writer_block = writer_block
        self.memory_slots = memory_slots
        self.output_dim = output_dim
        self.memory_dim = memory_dim
        self.temperature_min = 1e-4
        self.temperature_max = float(temperature_max)
        self.writer_heads = writer_heads
        self.writer_intermediate_dim = writer_intermediate_dim
        self.similarity_loss_weight = float(similarity_loss_weight)
        self.normalize_pooling = bool(normalize_pooling)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _check_widths(self, shapes):
        d_a, d_t = shapes[0][-1], shapes[1][-1]
        if self.memory_dim is None and d_a != d_t:
            raise ValueError(
                f"{self._describe()} reads the text memory with the audio "
                "embedding (x_a M_t^T) and the audio memory with the text "
                "embedding, so both embeddings need the same width. Received "
                f"widths d_a={d_a} and d_t={d_t}. Project them to a common "
                "width first, or pass `memory_dim` to let the layer project "
                "both."
            )

    def _dense(self, units, name, input_width, **kwargs):
        layer = keras.layers.Dense(
            units,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
            **kwargs,
        )
        layer.build((None, input_width))
        return layer

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        n = self.memory_slots
        if self.memory_dim is None:
            d = shapes[0][-1]
            self.input_projections = None
        else:
            d = self.memory_dim
            self.input_projections = [
                self._dense(d, f"{m}_projection", s[-1])
                for m, s in zip(_MODALITIES, shapes)
            ]
        self._width = d
        seed = self.seed
        # Feature-wise standardization of the embeddings (no scale, no
        # offset): what the memories store and the queries compare.
        self.embedding_norms = None
        if self.embedding_norm != "none":
            self.embedding_norms = []
            for m in _MODALITIES:
                norm = keras.layers.BatchNormalization(
                    center=False,
                    scale=False,
                    momentum=self.norm_momentum,
                    epsilon=self.norm_epsilon,
                    dtype=self.dtype_policy,
                    name=f"{m}_standardization",
                )
                norm.build((None, d))
                self.embedding_norms.append(norm)
        # Reader: temperatures[0] reads M_a (query x_t), [1] reads M_t (x_a).
        self.temperatures = [
            self._dense(1, f"{m}_memory_temperature", n) for m in _MODALITIES
        ]
        # Composer.
        self.pooling = CompactBilinearPooling(
            output_dim=self.output_dim,
            normalize=self.normalize_pooling,
            seed=None if seed is None else seed + 2,
            dtype=self.dtype_policy,
            name="pooling",
        )
        self.pooling.build([(None, d), (None, d)])
        self.attentions, self.norms = [], []
        for j in (1, 2):
            attention = FeatureSelfAttention(
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"composer_attention_{j}",
            )
            attention.build((None, self.output_dim))
            norm = keras.layers.BatchNormalization(
                momentum=self.norm_momentum,
                epsilon=self.norm_epsilon,
                dtype=self.dtype_policy,
                name=f"composer_norm_{j}",
            )
            norm.build((None, self.output_dim))
            self.attentions.append(attention)
            self.norms.append(norm)
        # Writer, one per memory.
        heads = self.writer_heads
        intermediate = self.writer_intermediate_dim or 2 * d
        self.writers = []
        for m in _MODALITIES:
            attention = keras.layers.MultiHeadAttention(
                heads,
                max(1, d // heads),
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"{m}_writer_attention",
            )
            attention.build((1, None, d), (1, None, d))
            norm_1 = keras.layers.LayerNormalization(
                dtype=self.dtype_policy, name=f"{m}_writer_norm_1"
            )
            norm_1.build((1, None, d))
            hidden = keras.layers.Dense(
                intermediate,
                activation="relu",
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"{m}_writer_hidden",
            )
            hidden.build((1, None, d))
            out = keras.layers.Dense(
                d,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"{m}_writer_output",
            )
            out.build((1, None, intermediate))
            norm_2 = keras.layers.LayerNormalization(
                dtype=self.dtype_policy, name=f"{m}_writer_norm_2"
            )
            norm_2.build((1, None, d))
            top_k = TopKPooling(
                n,
                temperature=(
                    0.0 if self.writer_selection == "hard" else self.writer_temperature
                ),
                straight_through=self.writer_selection == "straight_through",
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=f"{m}_writer_top_k",
            )
            top_k.build((1, None, d))
            self.writers.append((attention, norm_1, hidden, out, norm_2, top_k))
        # ReZero scales of the writer's two residual branches (writer_block
        # "rezero"): start at 0, so the block starts as the identity.
        self.writer_scales = []
        if self.writer_block == "rezero":
            for m in _MODALITIES:
                self.writer_scales.append(
                    self.add_weight(
                        shape=(2,),
                        name=f"{m}_writer_residual_scales",
                        initializer="zeros",
                        trainable=True,
                    )
                )
        # Memories: Xavier normal, gain 1 (untruncated, as torch's).
        self.memories = []
        for j, m in enumerate(_MODALITIES):
            self.memories.append(
                self.add_weight(
                    shape=(n, d),
                    name=f"memory_{m}",
                    initializer=keras.initializers.VarianceScaling(
                        scale=1.0,
                        mode="fan_avg",
                        distribution="untruncated_normal",
                        seed=None if seed is None else seed + j,
                    ),
                    trainable=False,
                    autocast=False,
                    aggregation="mean",
                )
            )
        # Memory writes skipped because they were not finite (NaN-safe).
        self.skipped_writes = self.add_weight(
            shape=(),
            name="skipped_writes",
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def _gumbel_noise(self, shape):
        """Standard Gumbel noise `-log(-log(u))`, `u ~ U(0, 1)`."""
        u = keras.random.uniform(shape, seed=self.seed_generator)
        return -ops.log(-ops.log(u + _EPSILON) + _EPSILON)

    def _read(self, query, memory, temperature_layer, training):
        """Eq. 1-2: Gumbel-softmax read of `memory` by `query`."""
        similarities = ops.matmul(
            ops.cast(query, "float32"), ops.transpose(memory)
        )  # Eq. 1: x_tmp
        temperature = ops.cast(
            temperature_layer(ops.cast(similarities, self.compute_dtype)), "float32"
        )
        temperature = ops.clip(
            ops.abs(temperature), self.temperature_min, self.temperature_max
        )  # Eq. 1: tau
        logits = similarities  # log x_tmp of Eq. 2, read as logits
        if training:
            noise = self._gumbel_noise(ops.shape(similarities))  # Eq. 2: g
            if self.gumbel_scale == "similarity_spread":
                spread = ops.std(similarities, axis=-1, keepdims=True)
                noise = ops.stop_gradient(spread) * noise
            logits = logits + noise  # Eq. 2
        weights = ops.softmax(logits / temperature, axis=-1)  # Eq. 2
        read = ops.matmul(weights, memory)  # Eq. 2: sum_i z_i M(i)
        return ops.cast(read, self.compute_dtype), weights, temperature

    def _standardize(self, x, norm, training):
        """Feature-wise standardization; non-finite rows are left out of
        the statistics (so a NaN sample cannot poison the moving ones)."""
        finite = ops.all(ops.isfinite(x), axis=-1)
        safe = ops.where(finite[:, None], x, 0.0)
        standardized = norm(safe, training=training, mask=finite)
        if self.variance_floor:
            # The batch normalization above keeps the moving statistics;
            # the value divides by the floored standard deviation.
            mean, std = self._statistics(x, norm, training)
            standardized = (safe - mean) / std
        # A non-finite embedding stays non-finite (its write is skipped).
        return ops.where(finite[:, None], standardized, x)

    def _statistics(self, x, norm, training):
        """The mean and standard deviation `_standardize` divides by: the
        batch's (finite rows) in training, the moving ones in inference."""
        if not training:
            mean = ops.cast(norm.moving_mean, x.dtype)
            variance = ops.cast(norm.moving_variance, x.dtype)
        else:
            finite = ops.cast(ops.all(ops.isfinite(x), axis=-1), x.dtype)[:, None]
            safe = ops.where(finite > 0, x, 0.0)
            count = ops.maximum(ops.sum(finite), 1.0)
            mean = ops.sum(safe * finite, axis=0) / count
            variance = ops.sum(ops.square(safe - mean) * finite, axis=0) / count
        if self.variance_floor:  # see `variance_floor`
            floor = self.variance_floor * ops.mean(variance)
            variance = ops.maximum(variance, floor)
        return mean, ops.sqrt(variance + self.norm_epsilon)

    def _write(self, memory, x, j, training):
        """The writer: transformer over [M; x] and top-k back to n slots."""
        attention, norm_1, hidden, out, norm_2, top_k = self.writers[j]
        expanded = ops.concatenate(
            [ops.cast(memory, self.compute_dtype), x], axis=0
        )  # (n + m, d)
        h = ops.expand_dims(expanded, 0)
        if self.writer_block == "rezero":
            scales = ops.cast(self.writer_scales[j], h.dtype)
            h = norm_1(h + scales[0] * attention(h, h, training=training))
            h = norm_2(h + scales[1] * out(hidden(h)))
        else:
            h = norm_1(h + attention(h, h, training=training))
            h = norm_2(h + out(hidden(h)))
        return ops.cast(top_k(h)[0], "float32")  # (n, d)

    def _forward(self, inputs, training):
        x_a, x_t = inputs
        if self.input_projections is not None:
            x_a = self.input_projections[0](x_a)
            x_t = self.input_projections[1](x_t)
        # q_a, q_t: what the memories store and the queries compare (Eq. 1-2,
        # the writer); x_a, x_t: what the composer pools (Eq. 3).
        q_a, q_t = x_a, x_t
        if self.embedding_norms is not None:
            q_a, q_t = (
                self._standardize(x, norm, training)
                for x, norm in zip((x_a, x_t), self.embedding_norms)
            )
            if self.embedding_norm == "standardize":
                x_a, x_t = q_a, q_t
        # PyTorch's assign is in place: read the state through a copy.
        states = [ops.copy(m) for m in self.memories]
        x_ta, z_a, tau_a = self._read(q_t, states[0], self.temperatures[0], training)
        x_at, z_t, tau_t = self._read(q_a, states[1], self.temperatures[1], training)
        if self.embedding_norm == "memory":
            # The reads back in the space of the embeddings they were
            # written from: M_a holds standardized audio embeddings.
            stats = [
                self._statistics(x, norm, training)
                for x, norm in zip((x_a, x_t), self.embedding_norms)
            ]
            x_ta = x_ta * stats[0][1] + stats[0][0]
            x_at = x_at * stats[1][1] + stats[1][0]
        p_1 = self.pooling([x_a, x_at])  # Eq. 3
        p_2 = self.pooling([x_ta, x_t])  # Eq. 3
        # The attention weights average 1 / D: rescale by D so that uniform
        # attention is the identity (see "Composer scale" in the docstring).
        scale = float(self.output_dim)
        f_1 = self.norms[0](self.attentions[0](p_1) * scale, training=training)
        f_2 = self.norms[1](self.attentions[1](p_2) * scale, training=training)
        return {
            "embeddings": [q_a, q_t],
            "states": states,
            "read_weights": [z_a, z_t],
            "temperature": [tau_a, tau_t],
            "reads": [x_ta, x_at],
            "output": (f_1 + f_2) / 2.0,
        }

    def _check_batch(self, inputs):
        batch = inputs[0].shape[0]
        if batch == 0:
            raise ValueError(
                f"{self._describe()} received an empty batch (0 examples): "
                "the writer stacks the batch onto the memory and needs at "
                "least one example. Received input shapes "
                f"{[tuple(x.shape) for x in inputs]}."
            )

    def call(self, inputs, training=None):
        self._check_batch(inputs)
        r = self._forward(inputs, training)
        if training and self.trainable:
            loss = 0.0
            skipped = ops.copy(self.skipped_writes)
            for j, memory in enumerate(self.memories):
                embeddings = r["embeddings"][j]
                if self.similarity_gradient == "writer":
                    # Eq. 4 trains the writer, not the encoders.
                    embeddings = ops.stop_gradient(embeddings)
                new_memory = self._write(r["states"][j], embeddings, j, training)
                loss = loss + mean_pairwise_cosine(
                    new_memory, squared=self.similarity_loss == "squared_cosine"
                )  # Eq. 4
                # NaN-safe write: a memory that would hold a non-finite
                # value keeps its last finite state; the skip is counted.
                finite = ops.all(ops.isfinite(new_memory))
                kept = ops.where(finite, new_memory, r["states"][j])
                skipped = skipped + 1.0 - ops.cast(finite, "float32")
                memory.assign(ops.stop_gradient(kept))
            self.skipped_writes.assign(skipped)
            self.add_loss(self.similarity_loss_weight * loss)  # Eq. 4
        return r["output"]

    def inspect(self, inputs):
        """What the layer does with `inputs`, without changing the memories.

        Runs the layer in inference mode (no Gumbel noise) and returns NumPy
        arrays. Every list has one entry per memory, in the order of
        `self.memories`: `[M_a, M_t]`.

        Args:
            inputs: `[x_a, x_t]`, arrays `(batch, d_a)`, `(batch, d_t)`.

        Returns:
            dict with `read_weights` `[(batch, n), (batch, n)]`: the weights
            of the text query over `M_a` and of the audio query over `M_t`
            (Eq. 2); `temperature` `[(batch, 1), (batch, 1)]` (Eq. 1);
            `reads` `[x_t,a, x_a,t]`; `output` `(batch, output_dim)`;
            `memory` `[M_a, M_t]`; `memory_after_write` `[M_a', M_t']`: the
            writer's result if this batch were a training batch (not
            assigned); `similarity_loss`: Eq. 4 on those.
        """
        inputs = [ops.convert_to_tensor(x, dtype=self.compute_dtype) for x in inputs]
        self._validate_call_inputs(inputs)
        self._check_batch(inputs)
        if not self.built:
            self.build([tuple(x.shape) for x in inputs])
        r = self._forward(inputs, training=False)
        after = [
            self._write(r["states"][j], r["embeddings"][j], j, False) for j in (0, 1)
        ]
        report = {
            key: [ops.convert_to_numpy(v) for v in r[key]]
            for key in ("read_weights", "temperature", "reads")
        }
        report["output"] = ops.convert_to_numpy(r["output"])
        report["memory"] = [ops.convert_to_numpy(m) for m in self.memories]
        report["memory_after_write"] = [ops.convert_to_numpy(m) for m in after]
        report["similarity_loss"] = float(
            sum(
                ops.convert_to_numpy(
                    mean_pairwise_cosine(
                        m, squared=self.similarity_loss == "squared_cosine"
                    )
                )
                for m in after
            )
        )
        return report

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "memory_slots": self.memory_slots,
            "output_dim": self.output_dim,
            "memory_dim": self.memory_dim,
            "temperature_max": self.temperature_max,
            "writer_heads": self.writer_heads,
            "writer_intermediate_dim": self.writer_intermediate_dim,
            "similarity_loss_weight": self.similarity_loss_weight,
            "normalize_pooling": self.normalize_pooling,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
            "writer_selection": self.writer_selection,
            "writer_temperature": self.writer_temperature,
            "writer_block": self.writer_block,
            "gumbel_scale": self.gumbel_scale,
            "norm_momentum": self.norm_momentum,
            "norm_epsilon": self.norm_epsilon,
            "embedding_norm": self.embedding_norm,
            "variance_floor": self.variance_floor,
            "similarity_loss": self.similarity_loss,
            "similarity_gradient": self.similarity_gradient,
        }

    @classmethod
    def from_config(cls, config):
        # Files saved before the writer options existed: the writer they
        # were trained with (SoftSort at temperature 1, post-norm block).
        config = {**LEGACY_WRITER, **config}
        return super().from_config(config)

    def load_own_variables(self, store):
        # Files saved before the NaN-safe write have no `skipped_writes`:
        # load the others, start the count at 0.
        if not self._load_own_variables_without(store, self.skipped_writes):
            super().load_own_variables(store)
