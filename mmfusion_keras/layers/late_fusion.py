import math

import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class LateFusion(BaseFusion):
    """Late (decision-level) fusion: a weighted average of per-modality scores.

    Each modality has its own classifier; this layer combines their class
    scores (probabilities or logits, all with the same number of classes
    `C`) into one:

        y = sum_i w_i y_i,   w_i >= 0,   sum_i w_i = 1

    - `weights=None, learnable=False`: the plain average, `w_i = 1 / n`.
    - `weights=[...], learnable=False`: fixed weights, normalized to sum to
      one (non-negative, at least one positive).
    - `learnable=True`: `w = softmax(v)` with trainable logits `v`,
      initialized to `log` of the normalized `weights` (so training starts
      from exactly those weights; uniform when `weights=None`). The weights
      must then be strictly positive.

    Args:
        weights: None or a list of `n` non-negative numbers, one per
            modality, in input order. Default None (uniform).
        learnable: bool, learn the weights. Default False.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, C)`.

    Returns:
        A tensor of shape `(batch, C)`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import LateFusion
    >>> fused = LateFusion(weights=[3, 1])(
    ...     [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])])
    >>> np.round(np.asarray(fused), 2).tolist()
    [[0.75, 0.25]]

    Reference:
        Snoek, Worring, Smeulders, "Early versus Late Fusion in Semantic
        Video Analysis", ACM Multimedia 2005 (late fusion; no numbered
        equations). Baltrusaitis, Ahuja, Morency, "Multimodal Machine
        Learning: A Survey and Taxonomy", IEEE TPAMI 2019, Section 6.1.
    """

    def __init__(self, weights=None, learnable=False, **kwargs):
        super().__init__(**kwargs)
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights
            ):
                raise ValueError(
                    "Received an invalid value for argument `weights`, expected "
                    "None or a list of numbers, one per modality. "
                    f"Received: weights={weights}"
                )
            weights = [float(w) for w in weights]
            if any(not math.isfinite(w) or w < 0 for w in weights) or not any(
                w > 0 for w in weights
            ):
                raise ValueError(
                    "Received an invalid value for argument `weights`, expected "
                    "finite non-negative numbers with a positive sum. "
                    f"Received: weights={weights}"
                )
            if learnable and any(w == 0 for w in weights):
                raise ValueError(
                    "Received an invalid value for argument `weights`, expected "
                    "strictly positive numbers when `learnable=True` (the "
                    "trainable logits start at log(weights)). "
                    f"Received: weights={weights}"
                )
        self.modality_weights = weights
        self.learnable = bool(learnable)

    def _check_widths(self, shapes):
        widths = [s[-1] for s in shapes]
        if len(set(widths)) > 1:
            raise ValueError(
                f"{self._describe()} averages class scores, so every modality "
                "must have the same number of classes. Received widths "
                f"{widths}."
            )
        if self.modality_weights is not None and len(self.modality_weights) != len(
            shapes
        ):
            raise ValueError(
                f"{self._describe()} has {len(self.modality_weights)} weights "
                f"({self.modality_weights}) but received {len(shapes)} "
                "modalities. Pass one weight per modality."
            )

    def _normalized_weights(self, n):
        weights = self.modality_weights or [1.0] * n
        total = sum(weights)
        return [w / total for w in weights]

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        self.logits = None
        if self.learnable:
            initial = [math.log(w) for w in self._normalized_weights(len(shapes))]
            self.logits = self.add_weight(
                shape=(len(shapes),),
                name="logits",
                initializer=keras.initializers.Constant(initial),
            )

    def call(self, inputs):
        scores = ops.stack(list(inputs), axis=1)  # (batch, n, C)
        if self.learnable:
            weights = ops.softmax(self.logits)
        else:
            weights = ops.convert_to_tensor(
                self._normalized_weights(len(inputs)), dtype=scores.dtype
            )
        weights = ops.cast(weights, scores.dtype)
        return ops.einsum("n,bnc->bc", weights, scores)  # sum_i w_i y_i

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], shapes[0][-1])

    def get_config(self):
        return {
            **super().get_config(),
            "weights": self.modality_weights,
            "learnable": self.learnable,
        }
