"""NumPy reference of MBAF (Priyasad et al. 2021, Eq. 1-9), one sample at a time."""

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def relu(x):
    return np.maximum(x, 0.0)


def mbaf_sample(x, x_compose, memory, w):
    """One sample through Eq. 2-9; returns (output, new memory, z, alpha).

    `w` holds NumPy weights: read_kernel, read_bias, composer_kernel,
    composer_bias, attention_kernel, transform_kernel.
    """
    key = x @ w["read_kernel"] + w["read_bias"]
    z = softmax(key @ memory.T)  # Eq. 2
    m = z @ memory  # Eq. 3
    b = relu(np.concatenate([x_compose, m]) @ w["composer_kernel"] + w["composer_bias"])
    alpha = softmax(b * (b @ w["attention_kernel"]))  # Eq. 5
    c = alpha * b  # Eq. 6
    h = relu(c @ w["transform_kernel"])  # Eq. 7
    new_memory = memory * (1.0 - z)[:, None] + np.outer(z, h)  # Eq. 8
    return x + h, new_memory, z, alpha  # Eq. 9


def mbaf_batch(xs, x_composes, memory, w):
    """A batch: every sample reads `memory` as it was at the batch start,
    then the writes of Eq. 8 are applied sample by sample, in order."""
    outputs, zs, alphas = [], [], []
    for x, xc in zip(xs, x_composes):
        o, _, z, alpha = mbaf_sample(x, xc, memory, w)
        outputs.append(o)
        zs.append(z)
        alphas.append(alpha)
    new_memory = memory.copy()
    # Sequential writes: the written vector h_s depends only on the batch-start
    # memory (the read), the key z_s too; apply them in sample order.
    for o, x, z in zip(outputs, xs, zs):
        h = o - x
        new_memory = new_memory * (1.0 - z)[:, None] + np.outer(z, h)
    return np.stack(outputs), new_memory, np.stack(zs), np.stack(alphas)
