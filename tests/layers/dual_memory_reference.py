"""NumPy reference of Dual Memory Fusion (Priyasad et al. 2023, Eq. 1-4)."""

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gumbel_read(
    query,
    memory,
    w,
    b,
    noise=None,
    tau_min=1e-4,
    tau_max=10.0,
    gumbel_scale="similarity_spread",
):
    """Eq. 1-2 for a batch: similarities, temperature, Gumbel-softmax, read.

    `w` `(n, 1)` and `b` `(1,)` are the temperature Dense; `noise` is the
    Gumbel noise `(batch, n)` (None: inference, no noise). With
    `gumbel_scale="similarity_spread"` the noise of sample i is multiplied
    by the standard deviation of that sample's n similarities (population
    std, computed by an explicit loop); "unit": standard Gumbel noise.
    Returns `(read, weights, temperature)`.
    """
    s = query @ memory.T  # Eq. 1
    tau = np.clip(np.abs(s @ w + b), tau_min, tau_max)  # Eq. 1
    logits = s
    if noise is not None:
        noise = np.array(noise, dtype="float64")
        if gumbel_scale == "similarity_spread":
            for i in range(len(s)):
                mean = sum(s[i]) / len(s[i])
                spread = np.sqrt(sum((v - mean) ** 2 for v in s[i]) / len(s[i]))
                noise[i] = spread * noise[i]
        logits = s + noise
    z = softmax(logits / tau)  # Eq. 2
    return z @ memory, z, tau


def mean_pairwise_cosine(memory, squared=False):
    """Eq. 4 term: mean of cos(M_i, M_j) (or of its square) over i < j, by
    an explicit loop."""
    n = len(memory)
    unit = memory / np.linalg.norm(memory, axis=-1, keepdims=True)
    power = 2 if squared else 1
    values = [(unit[i] @ unit[j]) ** power for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(values)) if values else 0.0


def top_k_pooling(x, p, k, temperature=0.0):
    """gPool (Gao and Ji 2019, Eq. 2) on one set `x` `(N, d)`.

    `temperature=0`: the k kept vectors gated by sigmoid of their score, in
    decreasing order of score. `temperature > 0`: SoftSort (Prillo and
    Eisenschlos 2020) rows `P_ij = softmax_j(-|v_i - y_j| / tau)` over the
    k best scores `v`, written as explicit loops, then `sigmoid(v_i) P_i x`.
    Returns the output `(k, d)` and the scores of all vectors.
    """
    y = x @ p / np.linalg.norm(p)
    idx = np.argsort(-y, kind="stable")[:k]
    if temperature == 0:
        return x[idx] * sigmoid(y[idx])[:, None], y
    out = np.zeros((k, x.shape[1]))
    for i in range(k):
        v = y[idx[i]]
        logits = np.array([-abs(v - y[j]) / temperature for j in range(len(y))])
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        out[i] = sigmoid(v) * sum(weights[j] * x[j] for j in range(len(y)))
    return out, y


def compact_bilinear(x, y, hashes, signs, dim, normalize=True):
    """Count sketches of x and y, circularly convolved via the FFT."""

    def sketch(v, h, s):
        out = np.zeros((len(v), dim))
        for i in range(v.shape[1]):
            out[:, h[i]] += s[i] * v[:, i]
        return out

    fx = np.fft.rfft(sketch(x, hashes[0], signs[0]), n=dim)
    fy = np.fft.rfft(sketch(y, hashes[1], signs[1]), n=dim)
    out = np.fft.irfft(fx * fy, n=dim)
    if normalize:  # signed square root, then L2 normalization
        out = np.sign(out) * np.sqrt(np.abs(out))
        out = out / np.linalg.norm(out, axis=-1, keepdims=True)
    return out


def feature_attention(b, kernel):
    return softmax(b * (b @ kernel)) * b


def batch_norm_inference(x, gamma, beta, mean, var, eps=1e-3):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def floored(var, floor):
    """`variance_floor`: no feature's variance below `floor` times the mean
    variance over the features (one feature at a time)."""
    limit = floor * sum(var) / len(var)
    return np.array([max(v, limit) for v in var])


def standardize(x, eps, stats=None, floor=0.0):
    """Feature-wise standardization: with `stats = (mean, var)` (the moving
    statistics, inference) or the batch's mean and biased variance."""
    if stats is None:
        stats = (x.mean(axis=0), x.var(axis=0))
    mean, var = stats
    return (x - mean) / np.sqrt(floored(var, floor) + eps)


def destandardize(x, eps, stats, floor=0.0):
    """The inverse of `standardize` with the statistics `(mean, var)`, one
    feature at a time."""
    mean, var = stats
    var = floored(var, floor)
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        out[:, j] = x[:, j] * np.sqrt(var[j] + eps) + mean[j]
    return out


def dual_memory_forward(x_a, x_t, memory_a, memory_t, p, noise=(None, None)):
    """The layer's output `x_f` (Eq. 1-3) with weights `p` (a dict).

    `noise[0]` is the Gumbel noise of the read of `M_a`, `noise[1]` of
    `M_t`. Batch normalization in inference mode.
    """
    q_a, q_t = x_a, x_t  # the queries of Eq. 1
    mode = p.get("embedding_norm", "none")
    if mode != "none":
        eps = p.get("norm_epsilon", 1e-3)
        floor = p.get("variance_floor", 0.0)
        q_a = standardize(x_a, eps, p["embedding_stats"][0], floor)
        q_t = standardize(x_t, eps, p["embedding_stats"][1], floor)
        if mode == "standardize":
            x_a, x_t = q_a, q_t  # the composer pools them too
        # "memory": the composer pools the embeddings as they came in.
    tau_max = p.get("temperature_max", 10.0)
    x_ta, z_a, tau_a = gumbel_read(
        q_t, memory_a, *p["temperature_a"], noise[0], tau_max=tau_max
    )
    x_at, z_t, tau_t = gumbel_read(
        q_a, memory_t, *p["temperature_t"], noise[1], tau_max=tau_max
    )
    if mode == "memory":  # the reads back in their embedding's space
        x_ta = destandardize(x_ta, eps, p["embedding_stats"][0], floor)
        x_at = destandardize(x_at, eps, p["embedding_stats"][1], floor)
    p_1 = compact_bilinear(x_a, x_at, p["hashes"], p["signs"], p["dim"])  # Eq. 3
    p_2 = compact_bilinear(x_ta, x_t, p["hashes"], p["signs"], p["dim"])  # Eq. 3
    a_1 = feature_attention(p_1, p["attention_1"]) * p["dim"]  # rescaled
    a_2 = feature_attention(p_2, p["attention_2"]) * p["dim"]
    eps = p.get("norm_epsilon", 1e-3)
    f_1 = batch_norm_inference(a_1, *p["bn_1"], eps=eps)
    f_2 = batch_norm_inference(a_2, *p["bn_2"], eps=eps)
    return (f_1 + f_2) / 2, (z_a, z_t), (tau_a, tau_t)


def layer_norm(x, gamma, beta, eps=1e-3):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def multi_head_attention(h, w):
    """Self-attention over the rows of `h` `(N, d)`, one head at a time.

    `w` holds Keras's MultiHeadAttention weights: `query`, `key`, `value`
    (kernel `(d, heads, key_dim)`, bias `(heads, key_dim)`) and `output`
    (kernel `(heads, key_dim, d)`, bias `(d,)`).
    """
    heads = w["query"][0].shape[1]
    out = np.tile(w["output"][1], (len(h), 1)).astype("float64")
    for head in range(heads):
        q, k, v = (
            h @ w[name][0][:, head, :] + w[name][1][head]
            for name in ("query", "key", "value")
        )
        scores = softmax(q @ k.T / np.sqrt(q.shape[-1]))  # (N, N)
        out += (scores @ v) @ w["output"][0][head]
    return out


def writer(memory, x, w, selection="soft", temperature=1.0, block="post_norm"):
    """The writer of one memory: transformer block over `[M; x]`, top-k.

    `selection`: "soft" (SoftSort at `temperature`), "hard" or
    "straight_through" (both the hard selection in the forward pass).
    `block`: "post_norm" (`LN(h + Attn(h))`, `LN(h + FFN(h))`) or
    "rezero" (the branches times the learned scales `w["scales"]`).
    Returns the new memory `(n, d)`.
    """
    h = np.concatenate([memory, x], axis=0)  # (n + m, d)
    scales = w["scales"] if block == "rezero" else (1.0, 1.0)
    h = layer_norm(h + scales[0] * multi_head_attention(h, w), *w["norm_1"])
    hidden = np.maximum(h @ w["hidden"][0] + w["hidden"][1], 0.0)
    h = layer_norm(h + scales[1] * (hidden @ w["out"][0] + w["out"][1]), *w["norm_2"])
    t = temperature if selection == "soft" else 0.0
    new_memory, _ = top_k_pooling(h, w["top_k"], len(memory), t)
    return new_memory
