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


def mbaf_sample(x, x_compose, memory, w, reading="softmax_features"):
    """One sample through Eq. 2-7 and Eq. 9 (no write): returns
    `(output, z, alpha, h)`.

    `w` holds NumPy weights: read_kernel, read_bias, composer_kernel,
    composer_bias and the reading's attention/transform weights.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # NaN samples propagate
        key = x @ w["read_kernel"] + w["read_bias"]
        z = softmax(key @ memory.T)  # Eq. 2
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


def mbaf_batch(xs, x_composes, memory, w, reading="softmax_features", write="soft"):
    """A batch: every sample reads `memory` as it was at the batch start,
    then the writes of Eq. 8 are applied sample by sample, in order.

    Returns `(outputs, new_memory, z, alpha, skipped)` with `skipped` the
    number of sample writes that were skipped as non-finite.
    """
    outputs, zs, alphas, hs = [], [], [], []
    for x, xc in zip(xs, x_composes):
        o, z, alpha, h = mbaf_sample(x, xc, memory, w, reading)
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
