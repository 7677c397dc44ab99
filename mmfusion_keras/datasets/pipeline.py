"""A `keras.utils.PyDataset` over dicts of NumPy inputs, for `model.fit`."""

import math

import keras
import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset


class MultimodalBatches(keras.utils.PyDataset):
    """Batches a dict of NumPy inputs (and labels) for `fit`/`evaluate`.

    Each batch is `(inputs, labels)` with `inputs` a dict from input name to
    the batch's rows (or `inputs` alone when `labels` is `None`), so a
    functional model whose `keras.Input`s carry the same names consumes it
    directly, on TensorFlow, JAX and PyTorch.

    With `shuffle=True` the example order is a permutation drawn from a
    generator seeded with `(seed, epoch)`: each epoch has a new order, and
    the same seed repeats the same sequence of orders. `on_epoch_end`
    (called by Keras after every epoch) advances the epoch.

    Args:
        inputs: dict of NumPy arrays with equal first dimension, or a
            `MultimodalDataset` (its `inputs` and `labels` are used).
        labels: NumPy array of targets, or `None` for prediction.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch.
        seed: integer seed of the shuffling; `None` draws one at random.
        keys: optional list of input names to keep (e.g. to leave out the
            text strings of a dataset). Inputs of string / object dtype
            cannot be batched for a model and raise unless left out.
        drop_remainder: drop the last incomplete batch.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Example:

    >>> import numpy as np
    >>> batches = MultimodalBatches(
    ...     {"a": np.zeros((10, 3)), "b": np.ones((10, 2))},
    ...     np.arange(10), batch_size=4, seed=0)
    >>> len(batches), batches[2][0]["a"].shape
    (3, (2, 3))
    """

    def __init__(
        self,
        inputs,
        labels=None,
        batch_size=32,
        shuffle=True,
        seed=None,
        keys=None,
        drop_remainder=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(inputs, MultimodalDataset):
            if labels is None:
                labels = inputs.labels
            inputs = inputs.inputs
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(
                "MultimodalBatches expected `inputs` to be a non-empty dict of "
                "NumPy arrays or a MultimodalDataset. Received: "
                f"{type(inputs).__name__}"
            )
        if keys is not None:
            unknown = [k for k in keys if k not in inputs]
            if unknown:
                raise ValueError(
                    f"MultimodalBatches: keys {unknown} are not inputs. Inputs: "
                    f"{sorted(inputs)}"
                )
            inputs = {k: inputs[k] for k in keys}
        self.inputs = {k: np.asarray(v) for k, v in inputs.items()}
        sizes = {k: len(v) for k, v in self.inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                "MultimodalBatches expected all inputs to have the same number "
                f"of examples. Received sizes: {sizes}"
            )
        for key, value in self.inputs.items():
            if value.dtype.kind in "OUSV":
                raise ValueError(
                    f"MultimodalBatches: input {key!r} has dtype {value.dtype}, "
                    "which a model cannot take. Encode it first (e.g. with a "
                    "tokenizer) or leave it out with `keys=`."
                )
        self.num_examples = next(iter(sizes.values()))
        if self.num_examples == 0:
            raise ValueError("MultimodalBatches received inputs with 0 examples.")
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != self.num_examples:
            raise ValueError(
                f"MultimodalBatches: {len(self.labels)} labels for "
                f"{self.num_examples} examples."
            )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(
                "MultimodalBatches expected a positive integer `batch_size`. "
                f"Received: batch_size={batch_size}"
            )
        self.batch_size = int(batch_size)
        self.drop_remainder = bool(drop_remainder)
        if self.drop_remainder and self.num_examples < self.batch_size:
            raise ValueError(
                f"MultimodalBatches: drop_remainder=True with {self.num_examples} "
                f"examples and batch_size={self.batch_size} leaves no batch."
            )
        self.shuffle = bool(shuffle)
        self.seed = (
            int(np.random.SeedSequence().entropy % (2**31))
            if seed is None
            else int(seed)
        )
        self.epoch = 0
        self._order = self._make_order()

    def _make_order(self):
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, self.epoch]).permutation(
            self.num_examples
        )

    @property
    def order(self):
        """The example order of the current epoch."""
        return self._order.copy()

    def __len__(self):
        if self.drop_remainder:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(
                f"MultimodalBatches has {len(self)} batches. Received: index={index}"
            )
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = {k: v[rows] for k, v in self.inputs.items()}
        if self.labels is None:
            return batch
        return batch, self.labels[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._make_order()
