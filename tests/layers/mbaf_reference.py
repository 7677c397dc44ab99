"""NumPy reference of MBAF (Priyasad et al. 2021, Eq. 1-9), one sample at a time.

Written from the paper, independently of the layer code: no closed forms,
no vectorisation over the batch. Every reading of Eq. 5-6 and both write
rules of Eq. 8 are spelled out sample by sample.
"""

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def relu(x):
    return np.maximum(x, 0.0)


def compose(b, w, reading):
    """Eq. 5-6 and Eq. 7 for one sample: returns `(c, alpha, h)`.

    * "softmax_features": b_hat = b W_a (matrix), e_i = b_i b_hat_i,
      alpha = softmax(e), c_i = alpha_i b_i; h = ReLU(c W).
    * "literal": alpha_i = exp(b^T b_hat) / sum_i exp(b^T b_hat) = 1/u
      (the score does not depend on i), c = sum_i alpha_i b = b; h = ReLU(c W).
    * "rescaled": as "softmax_features" with c_i = u alpha_i b_i.
    * "vector": b_hat a learned vector, e_i = b_i b_hat_i, alpha = softmax(e),
      c_i = u alpha_i b_i; h_i = ReLU(c_i w_i) with w a vector.
    """
    u = b.shape[-1]
    if reading == "literal":
        alpha = np.full(u, 1.0 / u)
        c = sum(alpha[i] * b for i in range(u))  # Eq. 6 as printed
        return c, alpha, relu(c @ w["transform_kernel"])
    if reading == "vector":
        alpha = softmax(b * w["attentive_vector"])
        c = u * alpha * b
        return c, alpha, relu(c * w["transform_vector"])
    alpha = softmax(b * (b @ w["attention_kernel"]))  # Eq. 5
    c = alpha * b  # Eq. 6, element-wise
    if reading == "rescaled":
        c = u * c
    return c, alpha, relu(c @ w["transform_kernel"])  # Eq. 7


def read_scores(key, memory, similarity, key_stats=None, sharpness=None):
    """The scores of Eq. 2 for one sample's key `f_r(x)` over the slots.

    * "dot": `key . M_j` (Eq. 2 as printed); "scaled": divided by sqrt(l);
      "cosine": `sharpness * cos(key, M_j)`.
    * "centered_<x>": the key is first standardized feature by feature with
      `key_stats = (mean, variance)` (batch statistics in training, moving
      ones in inference; epsilon 1e-3), then scored as `<x>`.
    """
    if similarity.startswith("centered_"):
        mean, variance = key_stats
        key = (key - mean) / np.sqrt(variance + 1e-3)
        similarity = similarity[len("centered_") :]
    width = memory.shape[-1]
    scores = np.array([sum(key[i] * slot[i] for i in range(width)) for slot in memory])
    if similarity == "scaled":
        scores = scores / np.sqrt(width)
    elif similarity == "cosine":
        norms = np.array([np.sqrt(sum(v * v for v in slot)) for slot in memory])
        scores = sharpness * scores / ((np.sqrt(key @ key) + 1e-6) * (norms + 1e-6))
    return scores


def mbaf_sample(
    x,
    x_compose,
    memory,
    w,
    reading="softmax_features",
    similarity="dot",
    key_stats=None,
):
    """One sample through Eq. 2-7 and Eq. 9 (no write): returns
    `(output, z, alpha, h)`.

    `w` holds NumPy weights: read_kernel, read_bias, composer_kernel,
    composer_bias, the reading's attention/transform weights and, for
    the cosine similarities, read_sharpness.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN samples propagate
        key = x @ w["read_kernel"] + w["read_bias"]
        scores = read_scores(
            key, memory, similarity, key_stats, w.get("read_sharpness")
        )
        z = softmax(scores)  # Eq. 2
        m = z @ memory  # Eq. 3
        b = np.concatenate([x_compose, m]) @ w["composer_kernel"]
        b = relu(b + w["composer_bias"])  # Eq. 4
        _, alpha, h = compose(b, w, reading)
    return x + h, z, alpha, h  # Eq. 9


def write_one(memory, z, h, write):
    """Eq. 8 for one sample.

    "soft": every slot j is erased by z_j and receives z_j h.
    "selected": the slot r = argmax z is erased and replaced by h; the
    other slots are untouched (the paper's prose). A sample whose h or z is
    not finite is skipped (the memory keeps its value).
    """
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(z))):
        return memory, True
    new = memory.copy()
    if write == "selected":
        r = int(np.argmax(z))
        new[r] = h
    else:
        for j in range(len(z)):
            new[j] = (1.0 - z[j]) * memory[j] + z[j] * h
    if not np.all(np.isfinite(new)):
        return memory, True
    return new, False


def key_batch_stats(xs, w):
    """Mean and (biased) variance of the keys `f_r(x)` over a batch, by loop
    (samples whose key is not finite are left out)."""
    with np.errstate(invalid="ignore", over="ignore"):
        keys = [x @ w["read_kernel"] + w["read_bias"] for x in xs]
    keys = [k for k in keys if np.all(np.isfinite(k))]  # left out, as in the layer
    mean = sum(keys) / len(keys)
    variance = sum((k - mean) ** 2 for k in keys) / len(keys)
    return mean, variance


def mbaf_batch(
    xs,
    x_composes,
    memory,
    w,
    reading="softmax_features",
    write="soft",
    similarity="dot",
    key_stats=None,
):
    """A batch: every sample reads `memory` as it was at the batch start,
    then the writes of Eq. 8 are applied sample by sample, in order.

    `key_stats`: `(mean, variance)` of the keys for the "centered_"
    similarities (e.g. `key_batch_stats` in training).

    Returns `(outputs, new_memory, z, alpha, skipped)` with `skipped` the
    number of sample writes that were skipped as non-finite.
    """
    outputs, zs, alphas, hs = [], [], [], []
    for x, xc in zip(xs, x_composes):
        o, z, alpha, h = mbaf_sample(x, xc, memory, w, reading, similarity, key_stats)
        outputs.append(o)
        zs.append(z)
        alphas.append(alpha)
        hs.append(h)
    new_memory = memory.copy()
    skipped = 0
    for z, h in zip(zs, hs):
        new_memory, was_skipped = write_one(new_memory, z, h, write)
        skipped += int(was_skipped)
    return np.stack(outputs), new_memory, np.stack(zs), np.stack(alphas), skipped
