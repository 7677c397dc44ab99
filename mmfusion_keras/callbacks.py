"""Keras callbacks of mmfusion-keras."""

import keras
import numpy as np

from mmfusion_keras.inspection import find_memory_layers
from mmfusion_keras.inspection import model_memory_health


def _first(inputs, n):
    """The first `n` examples of model inputs (array, list/tuple or dict)."""
    if isinstance(inputs, dict):
        return {key: value[:n] for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [value[:n] for value in inputs]
    return inputs[:n]


class MemoryHealthCallback(keras.callbacks.Callback):
    """Logs the health of every memory of the model at the end of each epoch.

    For every memory of every memory layer (`MemoryBasedAttentiveFusion`,
    `DualMemoryFusion`), adds to the epoch's `logs` (so they appear in the
    `History` returned by `fit`, in TensorBoard when a
    `keras.callbacks.TensorBoard` comes after this callback, and in CSV
    logs): `<prefix><name>_distinct_slots`, `<prefix><name>_effective_rank`,
    `<prefix><name>_norm_mean` and, when `inputs` are given,
    `<prefix><name>_read_entropy` and `<prefix><name>_slots_read`
    (measured on those inputs in inference
    mode; nothing is written to the memory). See
    `mmfusion_keras.inspection.memory_health` for the definitions.

    Args:
        inputs: optional model inputs (e.g. a few hundred validation
            examples) on which to measure the read entropy.
        threshold: cosine similarity above which two slots count as the
            same (default 0.99).
        prefix: prefix of the log keys (default `"memory/"`).
        max_inputs: measure the read entropy on at most this many of
            `inputs` (the first ones). Default 512.
        verbose: 1 prints one line per memory at each epoch end.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.callbacks import MemoryHealthCallback
    >>> from mmfusion_keras.models import build_fusion_classifier
    >>> model = build_fusion_classifier({"a": 4, "b": 3}, 2, "mbaf",
    ...     fusion_kwargs={"memory_slots": 5})
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> x = {"a": np.ones((8, 4)), "b": np.ones((8, 3))}
    >>> history = model.fit(x, np.zeros(8), epochs=1, verbose=0,
    ...     callbacks=[MemoryHealthCallback(inputs=x)])
    >>> "memory/fusion_distinct_slots" in history.history
    True
    """

    def __init__(
        self, inputs=None, threshold=0.99, prefix="memory/", max_inputs=512, verbose=0
    ):
        super().__init__()
        if inputs is not None and max_inputs is not None:
            inputs = _first(inputs, max_inputs)
        self.inputs = inputs
        self.threshold = threshold
        self.prefix = prefix
        self.max_inputs = max_inputs
        self.verbose = verbose
        self.last = []
        self._encoders = {}

    def on_train_begin(self, logs=None):
        self._encoders = {}
        if not find_memory_layers(self.model):
            raise ValueError(
                "MemoryHealthCallback needs a model with a memory layer (a layer "
                f"with `inspect()` and `memories`); model {self.model.name!r} has "
                "none."
            )

    def on_epoch_end(self, epoch, logs=None):
        self.last = model_memory_health(
            self.model, self.inputs, self.threshold, encoders=self._encoders
        )
        if logs is None:
            return
        for health in self.last:
            key = f"{self.prefix}{health['name']}"
            logs[f"{key}_distinct_slots"] = float(health["distinct_slots"])
            logs[f"{key}_effective_rank"] = float(health["effective_rank"])
            logs[f"{key}_norm_mean"] = float(np.nan_to_num(health["norm_mean"]))
            if health["read_entropy"] is not None:
                logs[f"{key}_read_entropy"] = float(health["read_entropy"])
                logs[f"{key}_slots_read"] = float(health["slots_read"])
        # NaN policy: writes the memory layers skipped as non-finite so far.
        for layer in find_memory_layers(self.model):
            skipped = getattr(layer, "skipped_writes", None)
            if skipped is not None:
                logs[f"{self.prefix}{layer.name}_skipped_writes"] = float(
                    keras.ops.convert_to_numpy(skipped)
                )
        if self.verbose:
            from mmfusion_keras.inspection import describe_memory_health

            for health in self.last:
                print(f"epoch {epoch + 1}: {describe_memory_health(health)}")
