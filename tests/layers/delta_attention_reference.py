"""NumPy reference of delta self-attention (Panchal, section 4.1, Eq. 9-12).

Written from the paper's equations, independently of the Keras layer, with
explicit loops over heads and time steps where that makes the math plain.
"""

import numpy as np


def conv1d_same(x, kernel, bias):
    """`x` (T, c_in), `kernel` (k, c_in, c_out): a 'same'-padded Conv1D (Eq. 9)."""
    k = kernel.shape[0]
    left = (k - 1) // 2
    right = k - 1 - left
    padded = np.concatenate(
        [np.zeros((left, x.shape[1])), x, np.zeros((right, x.shape[1]))], axis=0
    )
    out = np.zeros((x.shape[0], kernel.shape[2]))
    for t in range(x.shape[0]):
        out[t] = np.einsum("kc,kcd->d", padded[t : t + k], kernel) + bias
    return out


def softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def delta_self_attention(
    x, w, num_heads, delta="difference", window=None, mask=None, use_delta=True
):
    """One example through the layer.

    Args:
        x: (T, d) input sequence.
        w: dict of float64 weights: conv_kernel (k, d, c), conv_bias (c,),
            q_kernel / k_kernel (c, H*dk), q_bias / k_bias, v_kernel
            (c, H*c), v_bias, o_kernel (H*c, d_o), o_bias, delta_kernel (c, H).
        num_heads: H.
        delta: "difference" (X_j - X_i) . W or "absolute" |X_j - X_i| . W.
        window: None or w, the band |i - j| <= w.
        mask: None or (T,) bool padding mask.

    Returns:
        (logits (H, T, T) before masking, weights (H, T, T), output (T, d_o)).
    """
    t_len = x.shape[0]
    mask = np.ones(t_len, bool) if mask is None else np.asarray(mask, bool)
    x = x * mask[:, None]
    xh = conv1d_same(x, w["conv_kernel"], w["conv_bias"])  # Eq. 9
    c = xh.shape[1]
    q = (xh @ w["q_kernel"] + w["q_bias"]).reshape(t_len, num_heads, -1)
    k = (xh @ w["k_kernel"] + w["k_bias"]).reshape(t_len, num_heads, -1)
    v = (xh @ w["v_kernel"] + w["v_bias"]).reshape(t_len, num_heads, c)
    dk = q.shape[-1]
    logits = np.zeros((num_heads, t_len, t_len))
    for h in range(num_heads):
        for i in range(t_len):
            for j in range(t_len):
                rpe = 0.0
                if use_delta:
                    diff = xh[j] - xh[i]
                    if delta == "absolute":
                        diff = np.abs(diff)
                    rpe = diff @ w["delta_kernel"][:, h]  # RPE_ij, Eq. 11
                logits[h, i, j] = (q[i, h] @ k[j, h] + rpe) / np.sqrt(dk)  # Eq. 11
    allowed = np.ones((t_len, t_len), bool) & mask[None, :]
    if window is not None:
        idx = np.arange(t_len)
        allowed &= np.abs(idx[:, None] - idx[None, :]) <= window
    weights = np.zeros_like(logits)
    for h in range(num_heads):
        for i in range(t_len):
            if allowed[i].any():
                weights[h, i, allowed[i]] = softmax(logits[h, i, allowed[i]])
    z = np.concatenate([weights[h] @ v[:, h] for h in range(num_heads)], axis=-1)
    out = (z @ w["o_kernel"] + w["o_bias"]) * mask[:, None]  # Eq. 12
    return logits, weights, out
