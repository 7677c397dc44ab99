"""NumPy reference of the MFAS fusion network (Eq. 1-2) and its schedule."""

import numpy as np

ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
}


def fusion_forward(description, xs, ys, weights, activations):
    """Fused softmax probabilities.

    Args:
        description: list of (m, n, p), 1-based.
        xs, ys: lists of (batch, width) feature arrays (x_1.., y_1..).
        weights: list of (W, b) per fusion layer, then (W, b) of the
            classifier; W is (input width, output width).
        activations: names indexed by p - 1.
    """
    h = None
    for level, (m, n, p) in enumerate(description):
        parts = [xs[m - 1], ys[n - 1]] + ([] if h is None else [h])
        z = np.concatenate(parts, axis=-1)  # [x_m; y_n; h_{l-1}]
        w, b = weights[level]
        h = ACTIVATIONS[activations[p - 1]](z @ w + b)  # Eq. 1 (Eq. 2 if l = 1)
    w, b = weights[-1]
    logits = h @ w + b
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def temperature(step, num_steps, t_max, t_min):
    """Exponential decay T_max -> T_min over steps 0..num_steps-1."""
    if num_steps == 1:
        return t_max if step == 0 else t_min
    s = min(step, num_steps - 1)
    return t_max * np.exp(-s / (num_steps - 1) * np.log(t_max / t_min))


def probabilities(scores, temperature):
    p = np.asarray(scores, np.float64) ** (1.0 / temperature)
    return p / p.sum()
