"""NumPy reference of the Deep CCA total correlation (Andrew et al. 2013)."""

import numpy as np


def canonical_correlations_np(x, y, ridge=1e-3):
    """Singular values of T = S11^-1/2 S12 S22^-1/2, largest first (float64)."""
    x = np.asarray(x, "float64")
    y = np.asarray(y, "float64")
    n = x.shape[0]
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    s11 = xc.T @ xc / (n - 1) + ridge * np.eye(x.shape[1])
    s22 = yc.T @ yc / (n - 1) + ridge * np.eye(y.shape[1])
    s12 = xc.T @ yc / (n - 1)

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return v @ np.diag(w**-0.5) @ v.T

    t = inv_sqrt(s11) @ s12 @ inv_sqrt(s22)
    return np.linalg.svd(t, compute_uv=False)


def total_canonical_correlation_np(x, y, top_k=None, ridge=1e-3):
    sv = canonical_correlations_np(x, y, ridge)
    return float(sv[:top_k].sum()) if top_k else float(sv.sum())
