"""The container every mmfusion_keras dataset loader returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class MultimodalDataset:
    """Aligned NumPy arrays of several modalities, their labels and metadata.

    Every loader in `mmfusion_keras.datasets` (IEMOCAP, CMU-MOSEI, the
    PhysioNet CEBS records, a user manifest folder) returns this structure,
    so the same training code works on any of them.

    All arrays in `inputs`, `labels` and `metadata` share their first
    dimension: example `i` is `inputs[k][i]`, `labels[i]`, `metadata[m][i]`.

    Attributes:
        inputs: dict from modality name to a NumPy array with the examples on
            axis 0 (e.g. `"audio"`: float32 `(N, samples)`; `"text"`: an
            object array of `str`). Padded sequence modalities come with a
            boolean padding mask under `"<name>_mask"` (`True` = real step).
        labels: NumPy array with `N` rows: int32 class indices for
            classification datasets, float32 scores for regression targets.
        class_names: names of the classes, `labels[i]` indexes into it;
            `None` for regression targets.
        metadata: dict of per-example NumPy arrays that are not model inputs
            (ids, speakers, sessions, file paths, valid lengths, ...).
        info: dataset-level facts (sample rate, feature names, counts of
            skipped or cropped items, ...).

    Example:

    >>> import numpy as np
    >>> ds = MultimodalDataset(
    ...     inputs={"audio": np.zeros((3, 8), "float32")},
    ...     labels=np.array([0, 1, 0], "int32"),
    ...     class_names=("no", "yes"),
    ...     metadata={"id": np.array(["a", "b", "c"])},
    ... )
    >>> len(ds), ds.num_classes, ds.subset([2, 0]).metadata["id"].tolist()
    (3, 2, ['c', 'a'])
    """

    inputs: dict
    labels: np.ndarray
    class_names: tuple | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.inputs, dict) or not self.inputs:
            raise ValueError(
                "MultimodalDataset expected `inputs` to be a non-empty dict of "
                f"NumPy arrays. Received: inputs={type(self.inputs).__name__}"
            )
        self.labels = np.asarray(self.labels)
        if self.class_names is not None:
            self.class_names = tuple(self.class_names)
        n = len(self.labels)
        for group, arrays in (("inputs", self.inputs), ("metadata", self.metadata)):
            for key, value in arrays.items():
                value = np.asarray(value)
                arrays[key] = value
                if value.ndim == 0 or len(value) != n:
                    raise ValueError(
                        f"MultimodalDataset expected every array in `{group}` "
                        f"to have {n} rows (one per label). Received: "
                        f"{group}[{key!r}] with shape {value.shape}"
                    )

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self):
        """The number of classes, or `None` for regression targets."""
        return None if self.class_names is None else len(self.class_names)

    def subset(self, indices):
        """A new `MultimodalDataset` holding the examples at `indices`."""
        indices = np.asarray(indices)
        return MultimodalDataset(
            inputs={k: v[indices] for k, v in self.inputs.items()},
            labels=self.labels[indices],
            class_names=self.class_names,
            metadata={k: v[indices] for k, v in self.metadata.items()},
            info=dict(self.info),
        )
