import keras
from keras import ops

from mmfusion_keras.losses.dcca import _check_ridge
from mmfusion_keras.losses.dcca import _inverse_sqrt


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class CanonicalProjection(keras.layers.Layer):
    """Projects 2+ views onto their top-`units` shared canonical directions.

    The `CCA(·)` of Panchal's DCCA stage (section 4.2): `Ŷ_M = CCA(E(Y_M))
    ∈ R^{T_M × d_r}`, `d_r ≪ d_o`. After the encoders `E_M` have been made
    correlated (the objective of `CanonicalCorrelationLoss`), the linear
    CCA of their outputs gives, per view, the directions along which the
    views agree; projecting every time step onto the top `d_r` of them
    keeps only the part of each modality shared with the others, in
    coordinates that mean the same thing for every modality (column `k` of
    `Ŷ_L`, `Ŷ_V` and `Ŷ_A` all estimate the `k`-th shared variate).

    **Directions (generalized CCA, MAXVAR).** With the per-view
    covariances `S_MM` (ridge `r` added) and the joint covariance `S` of
    the stacked views, `C = W S W`, `W = blockdiag(S_MM^-1/2)`, and its
    top eigenpairs `(λ_k, v_k)` (`v_k` split by view into `v_kM`), view `M`
    is projected by

        A_M[:, k] = sqrt(λ_k) S_MM^-1/2 v_kM,     Ŷ_M = (E_M - μ_M) A_M

    which is the least-squares map of view `M` onto the unit-variance
    shared representation `G` of MAXVAR generalized CCA (Carroll 1968;
    `mmfusion_keras.losses.generalized_canonical_correlation` is the
    matching objective). For two views these are the classical canonical
    directions (`λ_k = 1 + ρ_k`). Each eigenvector's sign is fixed so that
    its largest-magnitude entry is positive.

    **Statistics.** CCA needs one observation per example and view, and
    unaligned modalities have no step correspondence: sequences are
    mean-pooled over their real steps (as in `CanonicalCorrelationLoss`);
    the directions are then applied to every step. The means and the joint
    covariance are moving averages (the BatchNormalization pattern: updated
    in training when the layer is trainable, with `momentum`; read-only in
    inference and when frozen), and the projection is always computed from
    them, so a small batch (Table 1 trains DCCA with batches of 4) gives a
    stable projection. No gradient flows through the directions
    themselves; it flows into the encoders through `E_M`. Initially the
    covariance is the identity and the means zero.

    Args:
        units: int, `d_r`, the number of shared directions (at most the
            smallest view width).
        ridge: non-negative value added to the diagonal of each `S_MM`.
            Default 1e-3.
        momentum: float in [0, 1), of the moving statistics. Default 0.9.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: list of 2 or more float tensors, `(batch, T_M, d_M)` or
            `(batch, d_M)`.
        mask: optional list (one per view, None allowed) of boolean
            `(batch, T_M)` masks, `True` at real steps.
        training: bool; updates the moving statistics when the layer is
            trainable.

    Returns:
        The list of projections `(batch, T_M, units)` (or `(batch, units)`),
        padded steps set to zero; masks pass through.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import CanonicalProjection
    >>> rng = np.random.default_rng(0)
    >>> views = [rng.normal(size=(8, 5, d)).astype("float32") for d in (4, 3, 6)]
    >>> out = CanonicalProjection(2)(views, training=True)
    >>> [tuple(o.shape) for o in out]
    [(8, 5, 2), (8, 5, 2), (8, 5, 2)]

    Reference:
        Panchal, "Hierarchical Delta-Attention Method for Multimodal
        Fusion", section 4.2 (`Ŷ = CCA(E(Y_M)) ∈ R^{T_M × d_r}`).
        Carroll, "Generalization of canonical correlation analysis to
        three or more sets of variables", 1968 (MAXVAR).
    """

    def __init__(self, units, ridge=1e-3, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if not _positive_int(units):
            raise ValueError(
                "CanonicalProjection received an invalid value for argument "
                f"`units`, expected a positive integer. Received: units={units!r}"
            )
        _check_ridge(ridge, "CanonicalProjection")
        if isinstance(momentum, bool) or not 0.0 <= float(momentum) < 1.0:
            raise ValueError(
                "CanonicalProjection received an invalid value for argument "
                f"`momentum`, expected a float in [0, 1). Received: "
                f"momentum={momentum!r}"
            )
        self.units = units
        self.ridge = float(ridge)
        self.momentum = float(momentum)
        self.supports_masking = True

    def _check(self, shapes):
        if (
            not isinstance(shapes, (list, tuple))
            or len(shapes) < 2
            or not all(isinstance(s, (list, tuple)) for s in shapes)
        ):
            raise ValueError(
                "CanonicalProjection expects a list of at least 2 views. "
                f"Received: {shapes!r}"
            )
        shapes = [tuple(s) for s in shapes]
        for i, s in enumerate(shapes):
            if len(s) not in (2, 3) or s[-1] is None:
                raise ValueError(
                    "CanonicalProjection expects views of shape (batch, time, "
                    "features) or (batch, features) with known features. "
                    f"Received view {i} with shape {s}"
                )
        smallest = min(s[-1] for s in shapes)
        if self.units > smallest:
            raise ValueError(
                f"CanonicalProjection(units={self.units}) needs every view to "
                f"have at least `units` features. Received view widths "
                f"{[s[-1] for s in shapes]}"
            )
        return shapes

    def build(self, input_shape):
        shapes = self._check(input_shape)
        self._sizes = [int(s[-1]) for s in shapes]
        total = sum(self._sizes)
        self.moving_mean = self.add_weight(
            shape=(total,),
            name="moving_mean",
            initializer="zeros",
            trainable=False,
            autocast=False,
        )
        self.moving_covariance = self.add_weight(
            shape=(total, total),
            name="moving_covariance",
            initializer="identity",
            trainable=False,
            autocast=False,
        )

    def _pool(self, x, mask):
        x = ops.cast(x, "float32")
        if len(x.shape) == 2:
            return x
        if mask is None:
            return ops.mean(x, axis=1)
        m = ops.expand_dims(ops.cast(mask, "float32"), -1)
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    def projections(self, mean=None, covariance=None):
        """The per-view maps `A_M` `(d_M, units)` and means `μ_M` `(d_M,)`."""
        mean = ops.copy(self.moving_mean) if mean is None else mean
        cov = ops.copy(self.moving_covariance) if covariance is None else covariance
        cov = 0.5 * (cov + ops.transpose(cov))
        starts = [sum(self._sizes[:i]) for i in range(len(self._sizes))]
        inv_sqrt = [
            _inverse_sqrt(cov[s : s + d, s : s + d] + self.ridge * ops.eye(d))
            for s, d in zip(starts, self._sizes)
        ]
        rows = []
        for s, d, w in zip(starts, self._sizes, inv_sqrt):
            rows.append(ops.matmul(w, cov[s : s + d]))
        whitened = ops.concatenate(rows, axis=0)  # W S
        cols = [
            ops.matmul(whitened[:, s : s + d], w)
            for s, d, w in zip(starts, self._sizes, inv_sqrt)
        ]
        joint = ops.concatenate(cols, axis=1)  # W S W
        joint = 0.5 * (joint + ops.transpose(joint))
        eigenvalues, vectors = ops.eigh(joint)  # ascending
        top = ops.flip(eigenvalues, axis=0)[: self.units]
        v = ops.flip(vectors, axis=1)[:, : self.units]
        # Sign convention: the largest-magnitude entry of each vector > 0.
        pivot = ops.argmax(ops.abs(v), axis=0)
        sign = ops.sign(ops.take_along_axis(v, pivot[None, :], axis=0))
        v = v * ops.where(sign == 0, 1.0, sign)
        scale = ops.sqrt(ops.maximum(top, 0.0))[None, :]
        maps = [
            ops.matmul(w, v[s : s + d]) * scale
            for s, d, w in zip(starts, self._sizes, inv_sqrt)
        ]
        means = [mean[s : s + d] for s, d in zip(starts, self._sizes)]
        return maps, means

    def call(self, inputs, mask=None, training=None):
        masks = [None] * len(inputs) if mask is None else list(mask)
        mean, cov = None, None
        if training and self.trainable:
            pooled = ops.concatenate(
                [self._pool(x, m) for x, m in zip(inputs, masks)], axis=-1
            )
            pooled = ops.stop_gradient(pooled)
            n = ops.cast(ops.shape(pooled)[0], "float32")
            batch_mean = ops.mean(pooled, axis=0)
            centred = pooled - batch_mean[None, :]
            batch_cov = ops.matmul(ops.transpose(centred), centred) / ops.maximum(
                n - 1.0, 1.0
            )
            m = self.momentum
            mean = ops.copy(self.moving_mean) * m + batch_mean * (1.0 - m)
            cov = ops.copy(self.moving_covariance) * m + batch_cov * (1.0 - m)
            self.moving_mean.assign(mean)
            self.moving_covariance.assign(cov)
        maps, means = self.projections(mean, cov)
        outputs = []
        for x, a, mu, m in zip(inputs, maps, means, masks):
            a = ops.cast(ops.stop_gradient(a), x.dtype)
            mu = ops.cast(ops.stop_gradient(mu), x.dtype)
            y = ops.matmul(x - mu, a)
            if m is not None and len(x.shape) == 3:
                y = y * ops.cast(m, y.dtype)[:, :, None]
            outputs.append(y)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else list(mask)

    def compute_output_shape(self, input_shape):
        return [tuple(s)[:-1] + (self.units,) for s in input_shape]

    def compute_output_spec(self, inputs, mask=None, training=None):
        return [
            keras.KerasTensor(tuple(x.shape)[:-1] + (self.units,), self.compute_dtype)
            for x in inputs
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "ridge": self.ridge,
            "momentum": self.momentum,
        }
