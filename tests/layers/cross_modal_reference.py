"""NumPy references of MulT's cross-modal attention and block (Eq. 1-8)."""

import numpy as np


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def mult_future_mask(t_target, t_source):
    """MulT's `buffered_future_mask`: True where a query may attend.

    MulT adds `triu(-inf, 1 + |T_s - T_t|)` to the logits; this returns the
    complement of that upper triangle as booleans.
    """
    blocked = np.triu(np.ones((t_target, t_source)), k=1 + abs(t_source - t_target))
    return blocked == 0


def cross_modal_attention_np(target, source, w, source_mask=None, causal=False):
    """Multi-head attention of `target` (queries) over `source` (keys/values).

    `w` holds query/key/value/output kernels (d, H, k) / (H, v, o) and biases.
    With `causal`, MulT's future mask applies too. Returns (output, weights)
    with weights (batch, H, T_target, T_source).
    """
    q = np.einsum("btd,dhk->bthk", target, w["query_kernel"]) + w["query_bias"]
    k = np.einsum("btd,dhk->bthk", source, w["key_kernel"]) + w["key_bias"]
    v = np.einsum("btd,dhk->bthk", source, w["value_kernel"]) + w["value_bias"]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(q.shape[-1])  # Eq. 2
    weights = np.zeros_like(logits)
    future = mult_future_mask(target.shape[1], source.shape[1])
    for b in range(logits.shape[0]):
        valid = (
            np.ones(source.shape[1], bool) if source_mask is None else source_mask[b]
        )
        for i in range(target.shape[1]):
            row = valid & future[i] if causal else valid
            if row.any():
                weights[b][:, i, row] = softmax(logits[b][:, i, row])
    heads = np.einsum("bhqs,bshv->bqhv", weights, v)  # Eq. 1
    out = np.einsum("bqhv,hvo->bqo", heads, w["output_kernel"]) + w["output_bias"]
    return out, weights


def layer_norm(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def block_np(target, source, w, source_mask=None, residual_from_normalized=False):
    """Eq. 7-8 without dropout."""
    nt = layer_norm(target, *w["target_norm"])
    ns = layer_norm(source, *w["source_norm"])
    attended, _ = cross_modal_attention_np(nt, ns, w["attention"], source_mask)
    z_hat = attended + (nt if residual_from_normalized else target)  # Eq. 7
    n = layer_norm(z_hat, *w["feedforward_norm"])
    hidden = np.maximum(n @ w["w1"] + w["b1"], 0)
    ff = hidden @ w["w2"] + w["b2"]
    return ff + (n if residual_from_normalized else z_hat)  # Eq. 8
