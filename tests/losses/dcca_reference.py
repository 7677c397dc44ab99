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


def generalized_cca_np(views, top_k, ridge=1e-3):
    """MAXVAR GCCA in sample space (Carroll 1968), float64.

    The shared representation G (n x k) is spanned by the top eigenvectors
    of the sum of the views' (ridge-regularized) hat matrices
    P_M = X_M (X_M^T X_M + r (n-1) I)^-1 X_M^T of the centred views, and the
    objective is the sum of those top-k eigenvalues minus k. Also returns
    G and the per-view least-squares maps U_M = (X_M^T X_M + r(n-1) I)^-1
    X_M^T G (the projections of each view onto G).
    """
    views = [np.asarray(v, "float64") for v in views]
    n = views[0].shape[0]
    centred = [v - v.mean(0) for v in views]
    hat = np.zeros((n, n))
    for x in centred:
        gram = x.T @ x + ridge * (n - 1) * np.eye(x.shape[1])
        hat += x @ np.linalg.solve(gram, x.T)
    w, v = np.linalg.eigh(hat)
    order = np.argsort(w)[::-1][:top_k]
    g = v[:, order] * np.sqrt(n - 1)  # unit variance columns
    maps = [
        np.linalg.solve(x.T @ x + ridge * (n - 1) * np.eye(x.shape[1]), x.T @ g)
        for x in centred
    ]
    return float(w[order].sum() - top_k), g, maps
