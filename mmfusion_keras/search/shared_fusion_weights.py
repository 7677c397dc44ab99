"""Weight sharing between sampled fusion networks (section 3.2)."""

import numpy as np

from mmfusion_keras.search.fusion_network import fusion_layer_name


class SharedFusionWeights:
    """A bank of fusion-layer weights keyed by layer shape and activation.

    After a sampled fusion network is trained, `store` keeps the kernel and
    bias of each fusion layer `l` under the key `(l, input width, output
    width, activation)`; `restore` initialises the fusion layers of a new
    sample from the bank wherever the key matches, and leaves the other
    layers at their random initialisation. A later sample with the same key
    overwrites the entry. The classifier is not shared (the paper shares
    only the fusion matrices `W_l`, "only among matrices in the same layer
    l"); including the activation in the key keeps ReLU and sigmoid layers
    apart, as their weights live on different scales.

    Example:

    >>> from mmfusion_keras.search.fusion_network import build_fusion_head
    >>> bank = SharedFusionWeights()
    >>> a = build_fusion_head([(1, 1, 1)], [4], [3], 2, units=5)
    >>> bank.store(a, [(1, 1, 1)], ["relu", "sigmoid"])
    [(1, 7, 5, 'relu')]
    >>> b = build_fusion_head([(1, 1, 1), (1, 1, 2)], [4], [3], 2, units=5)
    >>> bank.restore(b, [(1, 1, 1), (1, 1, 2)], ["relu", "sigmoid"])
    [(1, 7, 5, 'relu')]

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, section 3.2, "Weight sharing
        of fusion layers".
    """

    def __init__(self):
        self.weights = {}

    @staticmethod
    def key(level, input_width, output_width, activation):
        return (int(level), int(input_width), int(output_width), str(activation))

    def _layers(self, model, description, activations):
        for level, (_, _, p) in enumerate(description, start=1):
            layer = model.get_layer(fusion_layer_name(level))
            kernel = layer.kernel
            yield (
                self.key(level, kernel.shape[0], kernel.shape[1], activations[p - 1]),
                layer,
            )

    def store(self, model, description, activations):
        """Copies the fusion-layer weights of `model` into the bank.

        Returns:
            The keys written.
        """
        keys = []
        for key, layer in self._layers(model, description, activations):
            self.weights[key] = [np.array(w) for w in layer.get_weights()]
            keys.append(key)
        return keys

    def restore(self, model, description, activations):
        """Sets the fusion layers of `model` whose key is in the bank.

        Returns:
            The keys that were restored.
        """
        keys = []
        for key, layer in self._layers(model, description, activations):
            if key in self.weights:
                layer.set_weights(self.weights[key])
                keys.append(key)
        return keys

    def save(self, path):
        """Writes the bank to a `.npz` file."""
        arrays = {}
        for i, (key, values) in enumerate(sorted(self.weights.items())):
            arrays[f"key_{i}"] = np.asarray([str(v) for v in key])
            for j, w in enumerate(values):
                arrays[f"w_{i}_{j}"] = w
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """Reads a bank written by `save`."""
        bank = cls()
        with np.load(path) as data:
            i = 0
            while f"key_{i}" in data:
                raw = data[f"key_{i}"].tolist()
                key = cls.key(int(raw[0]), int(raw[1]), int(raw[2]), raw[3])
                values = []
                j = 0
                while f"w_{i}_{j}" in data:
                    values.append(np.array(data[f"w_{i}_{j}"]))
                    j += 1
                bank.weights[key] = values
                i += 1
        return bank
