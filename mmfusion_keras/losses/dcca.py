"""Deep CCA correlation objectives (Andrew et al. 2013), in `keras.ops`.

The total canonical correlation of two views `x` `(n, d1)` and `y`
`(n, d2)` (n samples, e.g. a batch) is computed as in Andrew et al. 2013,
section 2.2 ("Deep CCA"):

    x_c = x - mean(x),  y_c = y - mean(y)
    S11 = x_c^T x_c / (n - 1) + r I                               (ridge r)
    S22 = y_c^T y_c / (n - 1) + r I
    S12 = x_c^T y_c / (n - 1)
    T   = S11^-1/2 S12 S22^-1/2
    corr(x, y) = sum of the top-k singular values of T
                 (all of them, i.e. the trace norm of T, when k is None)

**Inverse square roots.** `S = V diag(w) V^T` by `keras.ops.eigh` (a
symmetric eigendecomposition available, with gradients, on TensorFlow, JAX
and PyTorch), then `S^-1/2 = V diag(w^-1/2) V^T`. The ridge keeps `w`
positive; eigenvalues are also clipped at `eps` as a guard.

**Singular values, differentiably.** The singular values of `T` are the
square roots of the eigenvalues of `T^T T` (or `T T^T`, whichever is
smaller), so they come from a second `keras.ops.eigh`; only eigenvalues are
used from it, whose gradient `dw_i = v_i^T dA v_i` is well defined for
distinct eigenvalues. Eigenvalues are clipped at `eps` before the square
root, so a zero singular value (rank-deficient `T`, e.g. batch < width)
has zero gradient instead of an infinite one. `keras.ops.svd` is avoided
because its gradient is not implemented on every backend.

Each canonical correlation lies in `[0, 1)` (the ridge shrinks it below 1),
so the total lies in `[0, min(k, d1, d2)]`.

Reference:
    Andrew, Arora, Bilmes, Livescu. Deep Canonical Correlation Analysis.
    ICML 2013, section 2 (objective and the `T` matrix).
    Panchal. Hierarchical Delta-Attention Method for Multimodal Fusion,
    section 4.2 (DCCA between the three modality encoders).
"""

import itertools

from keras import ops

_EPS = 1e-9


def _check_views(x, y):
    for name, v in (("x", x), ("y", y)):
        if len(v.shape) != 2:
            raise ValueError(
                "total_canonical_correlation expects two views of shape "
                f"(batch, features). Received {name} with shape {tuple(v.shape)}."
            )
    bx, by = x.shape[0], y.shape[0]
    if bx is not None and by is not None and bx != by:
        raise ValueError(
            "total_canonical_correlation expects both views to have the same "
            f"number of samples. Received x with shape {tuple(x.shape)} and "
            f"y with shape {tuple(y.shape)}."
        )


def _covariance_terms(x, y, ridge):
    n = ops.cast(ops.shape(x)[0], "float32")
    xc = x - ops.mean(x, axis=0, keepdims=True)
    yc = y - ops.mean(y, axis=0, keepdims=True)
    denom = ops.maximum(n - 1.0, 1.0)
    d1, d2 = x.shape[-1], y.shape[-1]
    s11 = ops.matmul(ops.transpose(xc), xc) / denom + ridge * ops.eye(d1)
    s22 = ops.matmul(ops.transpose(yc), yc) / denom + ridge * ops.eye(d2)
    s12 = ops.matmul(ops.transpose(xc), yc) / denom
    return s11, s12, s22


def _inverse_sqrt(s):
    """`S^-1/2` of a symmetric positive-definite matrix by eigendecomposition."""
    # Symmetrize against round-off, so eigh sees an exactly symmetric matrix.
    s = 0.5 * (s + ops.transpose(s))
    w, v = ops.eigh(s)
    w = ops.maximum(w, _EPS)
    return ops.matmul(v * ops.expand_dims(ops.rsqrt(w), 0), ops.transpose(v))


def canonical_correlations(x, y, ridge=1e-3):
    """All canonical correlations of two views, in descending order.

    Args:
        x: `(n, d1)` float tensor, one row per sample.
        y: `(n, d2)` float tensor, same `n`.
        ridge: non-negative value added to the diagonals of the two
            auto-covariances.

    Returns:
        A `(min(d1, d2),)` float32 tensor: the singular values of
        `T = S11^-1/2 S12 S22^-1/2`, largest first.
    """
    _check_views(x, y)
    x = ops.cast(x, "float32")
    y = ops.cast(y, "float32")
    s11, s12, s22 = _covariance_terms(x, y, ridge)
    t = ops.matmul(ops.matmul(_inverse_sqrt(s11), s12), _inverse_sqrt(s22))
    if x.shape[-1] <= y.shape[-1]:
        gram = ops.matmul(t, ops.transpose(t))  # (d1, d1)
    else:
        gram = ops.matmul(ops.transpose(t), t)  # (d2, d2)
    gram = 0.5 * (gram + ops.transpose(gram))
    eigenvalues, _ = ops.eigh(gram)
    singular = ops.sqrt(ops.maximum(eigenvalues, _EPS))
    return ops.flip(ops.sort(singular), axis=0)


def total_canonical_correlation(x, y, top_k=None, ridge=1e-3):
    """Total correlation of the top-k canonical directions of two views.

    The Deep CCA objective (Andrew et al. 2013): the sum of the `top_k`
    largest singular values of `T = S11^-1/2 S12 S22^-1/2` (the trace norm
    of `T` when `top_k` is None). Maximize it (minimize its negative) to
    make two encoders' outputs correlated. See the module docstring for how
    the inverse square roots and the singular values are computed.

    Args:
        x: `(batch, d1)` float tensor (view 1, e.g. one encoder's output).
        y: `(batch, d2)` float tensor (view 2), same batch.
        top_k: number of canonical directions to sum, a positive integer,
            or None for all `min(d1, d2)`. Values above `min(d1, d2)` are
            clipped to it.
        ridge: non-negative regularizer added to the diagonal of each
            auto-covariance (`r1 = r2` in Andrew et al.).

    Returns:
        A float32 scalar tensor in `[0, min(top_k, d1, d2)]`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.losses import total_canonical_correlation
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((256, 1)).astype("float32")
    >>> x = np.concatenate([z, rng.standard_normal((256, 2))], 1).astype("float32")
    >>> y = (z + 0.01 * rng.standard_normal((256, 1))).astype("float32")
    >>> round(float(total_canonical_correlation(x, y, top_k=1)), 2)
    1.0

    Reference:
        Andrew et al., Deep Canonical Correlation Analysis, ICML 2013,
        section 2.2.
    """
    _check_top_k(top_k, "total_canonical_correlation")
    _check_ridge(ridge, "total_canonical_correlation")
    correlations = canonical_correlations(x, y, ridge=ridge)
    if top_k is not None:
        correlations = correlations[: int(top_k)]
    return ops.sum(correlations)


def multiview_canonical_correlation(views, top_k=None, ridge=1e-3):
    """Sum of pairwise total canonical correlations of two or more views.

    For three views `(L, V, A)` this is `corr(L, V) + corr(L, A) + corr(V, A)`
    with `corr` = `total_canonical_correlation`. This "sum over pairs" is a
    choice, not generalized CCA (GCCA, which finds one shared representation
    `G` that all views project to and needs a different eigenproblem on the
    stacked views). The pairwise sum reduces to DCCA for two views, uses only
    the two-view computation, lets each pair have its own directions, and is
    bounded by `n_pairs * min(top_k, d)`; GCCA would instead force one
    common subspace for all three.

    Args:
        views: list or tuple of at least 2 `(batch, d_i)` float tensors.
        top_k: as in `total_canonical_correlation`, per pair.
        ridge: as in `total_canonical_correlation`.

    Returns:
        A float32 scalar tensor.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.losses import multiview_canonical_correlation
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((128, 2)).astype("float32")
    >>> views = [z + 0.1 * rng.standard_normal((128, 2)).astype("float32")
    ...          for _ in range(3)]
    >>> value = float(multiview_canonical_correlation(views, top_k=2))
    >>> 5.5 < value <= 6.0
    True
    """
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        received = (
            f"{len(views)} views"
            if isinstance(views, (list, tuple))
            else f"a single tensor of shape {tuple(getattr(views, 'shape', ()))}"
        )
        raise ValueError(
            "multiview_canonical_correlation expects a list of at least 2 "
            f"views of shape (batch, features). Received {received}."
        )
    total = 0.0
    for a, b in itertools.combinations(range(len(views)), 2):
        total = total + total_canonical_correlation(
            views[a], views[b], top_k=top_k, ridge=ridge
        )
    return total


def _check_top_k(top_k, where):
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
    ):
        raise ValueError(
            f"{where}: received an invalid value for argument `top_k`, "
            f"expected a positive integer or None. Received: top_k={top_k!r}"
        )


def _check_ridge(ridge, where):
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or ridge < 0:
        raise ValueError(
            f"{where}: received an invalid value for argument `ridge`, "
            f"expected a non-negative number. Received: ridge={ridge!r}"
        )


def _check_views_list(views, where):
    if not isinstance(views, (list, tuple)) or len(views) < 2:
        received = (
            f"{len(views)} views"
            if isinstance(views, (list, tuple))
            else f"a single tensor of shape {tuple(getattr(views, 'shape', ()))}"
        )
        raise ValueError(
            f"{where} expects a list of at least 2 views of shape (batch, "
            f"features). Received {received}."
        )
    for i, v in enumerate(views):
        if len(v.shape) != 2:
            raise ValueError(
                f"{where} expects views of shape (batch, features). Received "
                f"view {i} with shape {tuple(v.shape)}."
            )


def whitened_joint_covariance(views, ridge=1e-3):
    """`C = W S W` of stacked views, `W = blockdiag(S_MM^-1/2)` (MAXVAR GCCA).

    `S` is the joint covariance of the concatenated views `[X_1, ..., X_m]`
    (centred, divided by `n - 1`) and `S_MM` its diagonal blocks with the
    ridge `r` added; `C` has the whitened cross-covariances
    `S_MM^-1/2 S_MN S_NN^-1/2` off the diagonal and `S_MM^-1/2 (S_MM - rI)
    S_MM^-1/2` (the identity when `r = 0`) on it. Its nonzero eigenvalues
    are those of the sum of the views' ridge-regularized hat matrices. Its eigenvectors `v`
    (split by view, `v_M`) give the generalized-CCA directions
    `S_MM^-1/2 v_M` of every view onto one shared representation.

    Args:
        views: list of `(n, d_M)` float tensors.
        ridge: non-negative diagonal regularizer.

    Returns:
        `(C, inverse square roots [S_11^-1/2, ...])`, float32.
    """
    views = [ops.cast(v, "float32") for v in views]
    n = ops.cast(ops.shape(views[0])[0], "float32")
    denom = ops.maximum(n - 1.0, 1.0)
    centred = [v - ops.mean(v, axis=0, keepdims=True) for v in views]
    inv_sqrt = [
        _inverse_sqrt(
            ops.matmul(ops.transpose(c), c) / denom + ridge * ops.eye(c.shape[-1])
        )
        for c in centred
    ]
    whitened = ops.concatenate(
        [ops.matmul(c, w) for c, w in zip(centred, inv_sqrt)], axis=-1
    )
    joint = ops.matmul(ops.transpose(whitened), whitened) / denom
    return 0.5 * (joint + ops.transpose(joint)), inv_sqrt


def generalized_canonical_correlation(views, top_k=None, ridge=1e-3):
    """Multiview (generalized, MAXVAR) canonical correlation of 2+ views.

    Generalized CCA in Carroll's (1968) MAXVAR form finds one shared
    representation `G` (`G^T G = I`) that every view predicts linearly,
    `min sum_M ||G - X_M U_M||^2`; `G` is spanned by the top eigenvectors
    of `sum_M P_M`, `P_M = X_M (X_M^T X_M)^-1 X_M^T` (the hat matrix of view
    `M`, ridge-regularized: `(X_M^T X_M + r (n - 1) I)^-1`). Its nonzero
    eigenvalues are those of the whitened joint covariance `C`
    (`whitened_joint_covariance`), a small `(sum d_M)`-square matrix, each
    between 0 and the number of views `m`. The objective returned here is

        sum of the top-k eigenvalues of C  -  k

    ("excess" shared variance). For two views (and `ridge -> 0`) the
    eigenvalues of `C` are `1 ± rho_i`, so this equals
    `total_canonical_correlation(x, y, top_k)`;
    for three views it rewards one common subspace for all of them, where
    `multiview_canonical_correlation` sums the three pairwise values and
    lets each pair keep its own directions.

    Args:
        views: list of at least 2 `(n, d_M)` float tensors, same `n`.
        top_k: positive int or None (default: `min_M d_M`), the number of
            shared directions.
        ridge: non-negative diagonal regularizer of each view's covariance.

    Returns:
        A float32 scalar tensor in `[0, top_k * (m - 1)]`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.losses import generalized_canonical_correlation
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((256, 1))
    >>> views = [np.concatenate([z, rng.standard_normal((256, 2))], 1)
    ...          .astype("float32") for _ in range(3)]
    >>> round(float(generalized_canonical_correlation(views, top_k=1)), 1)
    2.0

    Reference:
        Carroll, "Generalization of canonical correlation analysis to three
        or more sets of variables", APA 1968; Kettenring, "Canonical
        analysis of several sets of variables", Biometrika 1971 (MAXVAR);
        Benton et al., "Deep Generalized Canonical Correlation Analysis",
        2019 (the deep version).
    """
    _check_views_list(views, "generalized_canonical_correlation")
    _check_top_k(top_k, "generalized_canonical_correlation")
    _check_ridge(ridge, "generalized_canonical_correlation")
    k = min(v.shape[-1] for v in views) if top_k is None else int(top_k)
    joint, _ = whitened_joint_covariance(views, ridge=ridge)
    eigenvalues, _ = ops.eigh(joint)
    top = ops.flip(ops.sort(eigenvalues), axis=0)[:k]
    return ops.sum(top) - float(k)
