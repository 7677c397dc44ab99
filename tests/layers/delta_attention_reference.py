"""NumPy reference of delta self-attention (Panchal, section 4.1, Eq. 9-12).

Written from the paper's equations and indexing, independently of the Keras
layer, with explicit loops over heads and the time steps `i` (query) and
`j` (key). Float64 throughout.
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


def relative_term(xh, i, j, w, h, delta, max_length):
    """`RPE_ij` of head `h` (Eq. 11) for one pair of steps.

    "relative": `(X̂_j - X̂_i) · W_RelPos[:, j - i]`, one column of the
    `(d_ch, T_max)` table per offset `j - i` (the paper's `i <= j`); offsets
    past the table use its last column; a pair with `j < i` (only reachable
    with `key_range="both"`) uses the column of `|j - i|`. A per-head table
    `(H, d_ch, T_max)` is indexed by `h` first.
    "per_key_bias": `(X̂_j - X̂_i) · w_h` with one vector per head
    (`(d_ch, H)`), the same for every pair.
    "absolute": `|X̂_j - X̂_i| · w_h`.
    """
    diff = xh[j] - xh[i]
    if delta == "relative":
        table = w["relative_kernel"]
        if table.ndim == 3:
            table = table[h]
        offset = min(abs(j - i), max_length - 1)
        return diff @ table[:, offset]
    if delta == "absolute":
        diff = np.abs(diff)
    return diff @ w["delta_kernel"][:, h]


def delta_self_attention(
    x,
    w,
    num_heads,
    delta="relative",
    window=None,
    mask=None,
    use_delta=True,
    key_range="forward",
    max_length=None,
):
    """One example through the layer.

    Args:
        x: (T, d) input sequence.
        w: dict of float64 weights: conv_kernel (k, d, c), conv_bias (c,),
            q_kernel / k_kernel (c, H*dk), q_bias / k_bias, v_kernel
            (c, H*c), v_bias, o_kernel (H*c, d_o), o_bias, and
            relative_kernel (c, T_max) or (H, c, T_max) for "relative",
            delta_kernel (c, H) for "per_key_bias" / "absolute".
        num_heads: H.
        delta: "relative", "per_key_bias" or "absolute" (see `relative_term`).
        window: None or w: the keys of query i are j with 0 <= j - i <= w
            ("forward") or |j - i| <= w ("both").
        mask: None or (T,) bool padding mask.
        key_range: "forward" (keys j >= i only, the paper's i <= j) or
            "both".
        max_length: T_max, the number of columns of the relative table.

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
    allowed = np.zeros((t_len, t_len), bool)
    for i in range(t_len):
        for j in range(t_len):
            ok = bool(mask[j])
            if key_range == "forward":
                ok = ok and j >= i
            if window is not None:
                ok = ok and abs(j - i) <= window
            allowed[i, j] = ok
            for h in range(num_heads):
                rpe = 0.0
                if use_delta and (key_range == "both" or j >= i):
                    rpe = relative_term(xh, i, j, w, h, delta, max_length)
                logits[h, i, j] = (q[i, h] @ k[j, h] + rpe) / np.sqrt(dk)  # Eq. 11
    weights = np.zeros_like(logits)
    for h in range(num_heads):
        for i in range(t_len):
            if allowed[i].any():
                weights[h, i, allowed[i]] = softmax(logits[h, i, allowed[i]])
    z = np.concatenate([weights[h] @ v[:, h] for h in range(num_heads)], axis=-1)
    out = (z @ w["o_kernel"] + w["o_bias"]) * mask[:, None]  # Eq. 12
    return logits, weights, out
