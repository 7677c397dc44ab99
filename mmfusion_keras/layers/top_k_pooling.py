import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class TopKPooling(keras.layers.Layer):
    """Differentiable top-k pooling of a set of vectors (gPool + SoftSort).

    Scores every vector of a set with a learned projection, selects the `k`
    best-scoring vectors and gates each selected vector by the sigmoid of
    its score. With `temperature > 0` (the default) the selection itself is
    relaxed with SoftSort, so the projection `p` also receives gradients
    through which vectors are selected, not only through the gates:

        y = X p / ||p||                  one score per vector     (gPool Eq. 2)
        v = top_k(y, k)                  the k best scores, sorted descending
        P_ij = softmax_j(-|v_i - y_j| / tau)    (k x N)          (SoftSort)
        X' = sigmoid(v) * (P X)          gate the selected rows   (gPool Eq. 2)

    As `tau -> 0`, `P` becomes the one-hot rows of the top-k indices and
    `X'` the hard gPool output `X[idx] * sigmoid(y[idx])`; `temperature=0`
    computes that hard output exactly (the selection then gets no gradient,
    only the gates do). `straight_through=True` keeps both: the forward pass
    is the hard selection (the kept vectors themselves, no blend), and the
    backward pass uses SoftSort's gradient at `temperature`
    (`P = P_soft + stop_gradient(P_hard - P_soft)`, the straight-through
    estimator of Bengio, Leonard, Courville 2013, as in the Gumbel-softmax
    paper's "straight-through" variant). The scores are normalized by `||p||`, so they are on
    the scale of the inputs' projections (about unit scale for normalized
    inputs) and `tau` is in the same units: differences of scores much
    smaller than `tau` are blurred together, much larger ones are not.

    The rows are returned in decreasing order of their score.
    Dual Memory Fusion uses it to shrink a memory expanded with a batch of
    embeddings (`n + m` vectors) back to `n` slots. Its only loss there
    (Eq. 4, a cosine similarity) is invariant to the sigmoid gates, so the
    soft selection is what lets the scorer learn.

    Args:
        k: positive int, the number of vectors kept.
        temperature: non-negative float, the SoftSort temperature `tau`.
            Default 1.0. `0` gives the hard gPool selection (the kept
            vectors themselves, no gradient through the selection).
        straight_through: bool. True: hard selection in the forward pass,
            SoftSort gradient (at `temperature`, which must then be > 0) in
            the backward pass. Default False (older files load as before).
        kernel_initializer: initializer of the projection `p`. Default
            "glorot_uniform".
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(batch, N, d)` with `N >= k`.
        return_scores: bool; also return the scores `y` of all `N` vectors
            `(batch, N)` and the indices `(batch, k)` of the k best scores
            (the hard selection, where each soft row is centred). Default
            False.

    Returns:
        `(batch, k, d)`, or `(outputs, scores, indices)` with
        `return_scores=True`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import TopKPooling
    >>> pooled = TopKPooling(k=2)(np.ones((1, 5, 3), "float32"))
    >>> tuple(pooled.shape)
    (1, 2, 3)

    Reference:
        Gao, Ji, "Graph U-Nets", ICML 2019, section 3.2, Eq. 2 (the gPool
        layer, without the graph's adjacency part), with the selection
        relaxed by Prillo, Eisenschlos, "SoftSort: A Continuous Relaxation
        for the argsort Operator", ICML 2020 (section 3, `|.|` distance,
        restricted to the first k rows). Used as the "differentiable Top-K
        pooling" of Priyasad et al., "Dual Memory Fusion for Multimodal
        Speech Emotion Recognition", Interspeech 2023, section 2.2.
    """

    def __init__(
        self,
        k,
        temperature=1.0,
        kernel_initializer="glorot_uniform",
        straight_through=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(
                "Received an invalid value for argument `k`, expected a "
                f"positive integer. Received: k={k}"
            )
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not temperature >= 0
            or temperature == float("inf")
        ):
            raise ValueError(
                "Received an invalid value for argument `temperature`, "
                "expected a non-negative finite number (0 for the hard "
                f"selection). Received: temperature={temperature}"
            )
        if not isinstance(straight_through, bool):
            raise ValueError(
                "Received an invalid value for argument `straight_through`, "
                f"expected a bool. Received: straight_through={straight_through!r}"
            )
        if straight_through and temperature == 0:
            raise ValueError(
                "`straight_through=True` takes its backward pass from SoftSort "
                "and needs a positive `temperature`. Received: temperature=0"
            )
        self.k = k
        self.temperature = float(temperature)
        self.straight_through = straight_through
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _check_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"{self._describe()} expects a set of vectors of shape "
                f"(batch, N, d) with a known d. Received shape {shape}."
            )
        if shape[1] is not None and shape[1] < self.k:
            raise ValueError(
                f"{self._describe()} keeps k={self.k} vectors and needs at "
                f"least k vectors per set. Received N={shape[1]} "
                f"(shape {shape})."
            )
        return shape

    def build(self, input_shape):
        shape = self._check_shape(input_shape)
        self.kernel = self.add_weight(
            shape=(shape[-1],),
            name="kernel",
            initializer=_vector_initializer(self.kernel_initializer),
            trainable=True,
        )

    def call(self, inputs, return_scores=False):
        kernel = ops.cast(self.kernel, inputs.dtype)
        norm = ops.sqrt(ops.sum(ops.square(kernel)) + 1e-12)
        scores = ops.einsum("bnd,d->bn", inputs, kernel) / norm  # Eq. 2: y
        top_scores, indices = ops.top_k(scores, self.k)  # Eq. 2: idx
        # Hard gather as a product with one-hot rows: differentiable in
        # `inputs` and the same on every backend.
        hard = ops.one_hot(indices, ops.shape(inputs)[1], dtype=inputs.dtype)
        if self.temperature > 0:
            # SoftSort rows: P_ij = softmax_j(-|v_i - y_j| / tau), (b, k, N).
            distances = ops.abs(
                ops.expand_dims(top_scores, -1) - ops.expand_dims(scores, 1)
            )
            selection = ops.softmax(-distances / self.temperature, axis=-1)
            if self.straight_through:
                # Forward: the one-hot rows; backward: SoftSort's gradient.
                selection = selection + ops.stop_gradient(hard - selection)
        else:
            selection = hard
        kept = ops.matmul(selection, inputs)  # (batch, k, d)
        outputs = kept * ops.expand_dims(ops.sigmoid(top_scores), -1)  # Eq. 2
        if return_scores:
            return outputs, scores, indices
        return outputs

    def compute_output_shape(self, input_shape):
        shape = self._check_shape(input_shape)
        return (shape[0], self.k, shape[2])

    def compute_output_spec(self, inputs, return_scores=False):
        shape = self.compute_output_shape(inputs.shape)
        spec = keras.KerasTensor(shape, dtype=self.compute_dtype)
        if return_scores:
            return (
                spec,
                keras.KerasTensor(tuple(inputs.shape[:2]), dtype=self.compute_dtype),
                keras.KerasTensor((shape[0], self.k), dtype="int32"),
            )
        return spec

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "temperature": self.temperature,
            "straight_through": self.straight_through,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


def _vector_initializer(initializer):
    """Initializes a `(d,)` vector as one column of a `(d, 1)` kernel."""

    def init(shape, dtype=None):
        return ops.reshape(initializer((shape[0], 1), dtype=dtype), shape)

    return init
