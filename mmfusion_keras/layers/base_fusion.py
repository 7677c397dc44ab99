"""Shared input checks and plumbing for layers that fuse a list of modalities."""

import keras
from keras import ops


def _shape_tuple(shape):
    return tuple(None if d is None else int(d) for d in shape)


class BaseFusion(keras.layers.Layer):
    """Base class for layers that fuse a list of modality tensors.

    Subclasses receive a list of `n >= min_modalities` tensors of shape
    `(batch, d_i)` (or rank `expected_rank` when they say so). This class
    checks, with a `ValueError` naming the layer, what it received and what
    it expected:

    - the input is a list or tuple of at least `min_modalities` tensors
      (at most `max_modalities`, when set);
    - every tensor has rank `expected_rank`;
    - the batch sizes agree when they are known;
    - every tensor has a floating dtype (checked when the layer is called);
    - the widths fit the layer's configuration (`_check_widths`, for
      subclasses to override).

    Subclasses implement `build_fusion(shapes)`, `call`, and
    `compute_output_shape`.
    """

    min_modalities = 2
    max_modalities = None
    expected_rank = 2

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _load_own_variables_without(self, store, added):
        """Loads a file saved before the own variable `added` existed.

        When `store` holds exactly one value fewer than the layer's own
        variables, the others are loaded in order (skipping `added`) and
        `added` is set to zeros. Returns True if it did so, False (nothing
        loaded) for any other layout.
        """
        own = self._trainable_variables + self._non_trainable_variables
        if len(store.keys()) != len(own) - 1:
            return False
        for i, variable in enumerate(v for v in own if v is not added):
            variable.assign(store[str(i)])
        added.assign(ops.zeros(added.shape, added.dtype))
        return True

    def _validate_input_shapes(self, input_shape):
        """Checks a list of shapes and returns it as a list of tuples."""
        expected_count = f"a list of at least {self.min_modalities} modality tensors"
        if self.max_modalities is not None:
            if self.max_modalities == self.min_modalities:
                expected_count = (
                    f"a list of exactly {self.min_modalities} modality tensors"
                )
            else:
                expected_count = (
                    f"a list of {self.min_modalities} to {self.max_modalities} "
                    "modality tensors"
                )
        if not isinstance(input_shape, (list, tuple)) or (
            len(input_shape) > 0 and not isinstance(input_shape[0], (list, tuple))
        ):
            raise ValueError(
                f"{self._describe()} expects {expected_count}, one per "
                f"modality. Received a single tensor of shape {input_shape}. "
                "Pass the modalities as a list, e.g. `layer([x_audio, x_text])`."
            )
        shapes = [_shape_tuple(s) for s in input_shape]
        n = len(shapes)
        if n < self.min_modalities or (
            self.max_modalities is not None and n > self.max_modalities
        ):
            raise ValueError(
                f"{self._describe()} expects {expected_count}. "
                f"Received {n} modalities with shapes {shapes}."
            )
        for i, s in enumerate(shapes):
            if len(s) != self.expected_rank:
                raise ValueError(
                    f"{self._describe()} expects every modality to have rank "
                    f"{self.expected_rank} {self._rank_description()}. "
                    f"Received modality {i} with rank {len(s)} and shape {s}."
                )
        batches = {s[0] for s in shapes if s[0] is not None}
        if len(batches) > 1:
            raise ValueError(
                f"{self._describe()} expects all modalities to have the same "
                f"batch size. Received batch sizes "
                f"{[s[0] for s in shapes]} for shapes {shapes}."
            )
        for i, s in enumerate(shapes):
            if s[-1] is None:
                raise ValueError(
                    f"{self._describe()} needs the last dimension of every "
                    f"modality to be known. Received modality {i} with shape {s}."
                )
        self._check_widths(shapes)
        return shapes

    def _rank_description(self):
        if self.expected_rank == 2:
            return "(batch, features)"
        return ""

    def _check_widths(self, shapes):
        """Hook for subclasses: raise `ValueError` if widths don't fit."""

    def _validate_call_inputs(self, inputs):
        """Checks dtypes and (eager) shapes of the tensors given to `call`."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{self._describe()} expects a list of modality tensors. "
                f"Received a single tensor of shape {tuple(inputs.shape)}."
            )
        for i, x in enumerate(inputs):
            dtype = keras.backend.standardize_dtype(x.dtype)
            if "float" not in dtype:
                raise ValueError(
                    f"{self._describe()} expects floating-point modality "
                    f"tensors. Received modality {i} with dtype {dtype}. "
                    "Cast it first, e.g. `keras.ops.cast(x, 'float32')`."
                )
        self._validate_input_shapes([tuple(x.shape) for x in inputs])

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras autocasts or builds, so the message names
        # what the user passed.
        if isinstance(inputs, (list, tuple)) and all(
            hasattr(x, "shape") and hasattr(x, "dtype") for x in inputs
        ):
            self._validate_call_inputs(inputs)
        elif hasattr(inputs, "shape"):
            self._validate_input_shapes(tuple(inputs.shape))
        return super().__call__(inputs, *args, **kwargs)

    def _concat(self, inputs):
        return ops.concatenate(list(inputs), axis=-1)
