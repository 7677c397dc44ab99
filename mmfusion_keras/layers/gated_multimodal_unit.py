import keras
from keras import ops

from mmfusion_keras.layers.base_fusion import BaseFusion


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class GatedMultimodalUnit(BaseFusion):
    """Gated Multimodal Unit (GMU): a learned, per-unit gate between modalities.

    Every modality `x_i` is projected to a common space of `units` features
    and squashed with `tanh` (Eq. 1-2). A gate computed from *all* inputs
    decides, feature by feature and sample by sample, how much each modality
    contributes to the fused vector (Eq. 3-4):

        h_i = tanh(x_i W_i + b_i)                          (Eq. 1-2)
        a   = [x_1; ...; x_n] W_z + b_z,  reshaped (n, units)
        z   = softmax(a, over the n modalities)            (Eq. 3)
        h   = sum_i z_i * h_i                              (Eq. 4)

    Generalisation to `n >= 2` modalities (the paper writes the equations
    for two, and draws the n-modality unit without equations): the gates are
    a softmax across modalities, per unit, so they are non-negative and sum
    to one as in the bimodal unit. For `n = 2` this is exactly the paper's
    form: `softmax([a_1, a_2])_1 = sigmoid(a_1 - a_2)`, so with
    `W_z = W_z1 - W_z2` the first gate is the paper's `z = sigmoid(W_z x)`
    and the second one is `1 - z`. The softmax form has one redundant set of
    gate weights for `n = 2` (only the difference of the logits matters).

    The paper writes the projections without biases; they are used here by
    default (`use_bias=False` gives the paper's equations exactly).

    Args:
        units: positive int, width of the fused representation. Default 64.
        use_bias: bool, whether the projections and the gate have biases.
            Default True.
        kernel_initializer: initializer of the projection and gate kernels.
            Default "glorot_uniform".
        bias_initializer: initializer of the biases. Default "zeros".
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: list of `n >= 2` tensors of shape `(batch, d_i)`.
        return_gates: bool; also return the gates. Default False.

    Returns:
        A tensor of shape `(batch, units)`, or a tuple `(outputs, gates)`
        with gates of shape `(batch, n, units)` (non-negative, summing to one
        over axis 1) when `return_gates=True`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import GatedMultimodalUnit
    >>> gmu = GatedMultimodalUnit(units=8)
    >>> h, z = gmu([np.ones((2, 3)), np.ones((2, 5))], return_gates=True)
    >>> tuple(h.shape), tuple(z.shape)
    ((2, 8), (2, 2, 8))

    Reference:
        Arevalo, Solorio, Montes-y-Gomez, Gonzalez, "Gated Multimodal Units
        for Information Fusion", ICLR 2017 workshop (arXiv:1702.01992),
        Section 3, Eq. 1-4.
    """

    def __init__(
        self,
        units=64,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                "Received an invalid value for argument `units`, expected a "
                f"positive integer. Received: units={units}"
            )
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        self.num_modalities = len(shapes)
        self.kernels = []
        self.biases = []
        for i, shape in enumerate(shapes):
            self.kernels.append(
                self.add_weight(
                    shape=(shape[-1], self.units),
                    name=f"kernel_{i}",
                    initializer=self.kernel_initializer,
                )
            )
            if self.use_bias:
                self.biases.append(
                    self.add_weight(
                        shape=(self.units,),
                        name=f"bias_{i}",
                        initializer=self.bias_initializer,
                    )
                )
        total_width = sum(s[-1] for s in shapes)
        self.gate_kernel = self.add_weight(
            shape=(total_width, self.num_modalities * self.units),
            name="gate_kernel",
            initializer=self.kernel_initializer,
        )
        self.gate_bias = None
        if self.use_bias:
            self.gate_bias = self.add_weight(
                shape=(self.num_modalities * self.units,),
                name="gate_bias",
                initializer=self.bias_initializer,
            )

    def call(self, inputs, return_gates=False):
        inputs = list(inputs)
        hidden = []
        for i, x in enumerate(inputs):
            h = ops.matmul(x, self.kernels[i])
            if self.use_bias:
                h = h + self.biases[i]
            hidden.append(ops.tanh(h))  # Eq. 1-2
        hidden = ops.stack(hidden, axis=1)  # (batch, n, units)
        logits = ops.matmul(self._concat(inputs), self.gate_kernel)
        if self.use_bias:
            logits = logits + self.gate_bias
        logits = ops.reshape(logits, (-1, self.num_modalities, self.units))
        gates = ops.softmax(logits, axis=1)  # Eq. 3, softmax over modalities
        outputs = ops.sum(gates * hidden, axis=1)  # Eq. 4
        if return_gates:
            return outputs, gates
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = self._validate_input_shapes(input_shape)
        return (shapes[0][0], self.units)

    def compute_output_spec(self, inputs, return_gates=False):
        shapes = self._validate_input_shapes([tuple(x.shape) for x in inputs])
        batch = shapes[0][0]
        outputs = keras.KerasTensor((batch, self.units), dtype=self.compute_dtype)
        if return_gates:
            gates = keras.KerasTensor(
                (batch, len(shapes), self.units), dtype=self.compute_dtype
            )
            return outputs, gates
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
