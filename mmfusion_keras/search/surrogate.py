"""The recurrent surrogate that predicts a description's accuracy."""

import keras
import numpy as np

from mmfusion_keras.search.search_space import SearchSpace


def encode_descriptions(space, descriptions):
    """Descriptions as a zero-padded `(batch, L, 3)` float32 array.

    Each triplet becomes `(m / M, n / N, p / P)`, all in `(0, 1]`, so the
    all-zero rows after the last triplet are padding (masked).
    """
    scale = np.asarray(
        [space.num_x_features, space.num_y_features, len(space.activations)],
        np.float32,
    )
    out = np.zeros((len(descriptions), space.max_layers, 3), np.float32)
    for i, d in enumerate(descriptions):
        d = space.validate(d)
        out[i, : len(d)] = np.asarray(d, np.float32) / scale
    return out


class Surrogate:
    """A small recurrent network `pi` mapping a description to an accuracy.

    Every triplet is embedded by a sigmoid `Dense`, an LSTM reads the
    sequence (padding masked), and a sigmoid `Dense` on its last state
    predicts the validation accuracy. `fit` re-initialises the network from
    `seed` and trains it on everything seen so far (MSE, Adam), so its
    weights depend only on the data and the seed (a resumed search gets the
    same surrogate as an uninterrupted one).

    Args:
        space: the `SearchSpace` (gives `M`, `N`, `P` and `L`).
        embedding_dim: width of the triplet embedding.
        hidden_units: LSTM width.
        epochs: training epochs per `fit`.
        learning_rate: Adam learning rate.
        batch_size: training batch size.
        run_eagerly: passed to `compile` (`True` is faster for tiny data).

    Example:

    >>> from mmfusion_keras.search.search_space import SearchSpace
    >>> space = SearchSpace(2, 2, ("relu",), max_layers=2)
    >>> s = Surrogate(space, epochs=2)
    >>> _ = s.fit([[(1, 1, 1)], [(2, 2, 1), (1, 2, 1)]], [0.5, 0.9], seed=0)
    >>> s.predict([[(1, 2, 1)]]).shape
    (1,)

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, section 3.2 (recurrent
        surrogate `pi`, Algorithm 1 lines 16, 19 and 26).
    """

    def __init__(
        self,
        space,
        embedding_dim=32,
        hidden_units=32,
        epochs=100,
        learning_rate=0.01,
        batch_size=32,
        run_eagerly=False,
    ):
        if not isinstance(space, SearchSpace):
            raise ValueError(
                f"Surrogate expected a SearchSpace. Received: space={space!r}"
            )
        self.space = space
        self.embedding_dim = embedding_dim
        self.hidden_units = hidden_units
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.run_eagerly = run_eagerly
        self.model = None
        self._compiled = None

    def _build(self, compile=True):
        inputs = keras.Input((self.space.max_layers, 3), name="triplets")
        x = keras.layers.Masking(0.0)(inputs)
        x = keras.layers.Dense(self.embedding_dim, activation="sigmoid")(x)
        # Unrolled: L is small and fixed, and an unrolled LSTM compiles
        # faster than a loop on every backend.
        x = keras.layers.LSTM(self.hidden_units, unroll=True)(x)
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
        model = keras.Model(inputs, outputs, name="mfas_surrogate")
        if compile:
            model.compile(
                optimizer=keras.optimizers.Adam(self.learning_rate),
                loss="mse",
                run_eagerly=self.run_eagerly,
            )
        return model

    def _trainable(self):
        """The one compiled network that every `fit` trains (built once)."""
        if self._compiled is None:
            self._compiled = self._build()
            self._compiled.optimizer.build(self._compiled.trainable_variables)
            self._optimizer_start = [
                np.array(v.numpy()) for v in self._compiled.optimizer.variables
            ]
        return self._compiled

    def fit(self, descriptions, accuracies, seed=0):
        """Re-initialises the network and trains it on all pairs given.

        The initial weights are those of a network freshly built after
        `keras.utils.set_random_seed(seed)`; they are copied into one
        network compiled at the first `fit` (with a fresh optimizer state),
        so refitting after every search step costs no new model and no new
        trace or XLA compile. The `epochs` passes over the pairs are one
        stream of `epochs` independent shuffles (NumPy, from `seed`), cut
        into batches of `batch_size` with the incomplete last batch
        dropped: every step has the same shape (one compile), and the Keras
        per-epoch overhead is paid once.
        """
        if len(descriptions) != len(accuracies) or not descriptions:
            raise ValueError(
                "Surrogate.fit expected as many accuracies as descriptions "
                f"(at least one). Received {len(descriptions)} descriptions "
                f"and {len(accuracies)} accuracies."
            )
        keras.utils.set_random_seed(seed)
        initial = self._build(compile=False).get_weights()
        model = self._trainable()
        model.set_weights(initial)
        for variable, value in zip(model.optimizer.variables, self._optimizer_start):
            variable.assign(value)
        x = encode_descriptions(self.space, descriptions)
        y = np.asarray(accuracies, np.float32).reshape(-1, 1)
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(len(x)) for _ in range(self.epochs)])
        usable = max(self.batch_size, len(order) // self.batch_size * self.batch_size)
        order = np.resize(order, usable)
        history = model.fit(
            x[order],
            y[order],
            epochs=1,
            batch_size=self.batch_size,
            shuffle=False,
            verbose=0,
        )
        self.model = model
        return float(history.history["loss"][-1])

    def predict(self, descriptions):
        """Predicted accuracies, a float64 array of shape `(len(descriptions),)`."""
        if self.model is None:
            raise ValueError(
                "Surrogate.predict was called before fit() or load_weights()."
            )
        x = encode_descriptions(self.space, descriptions)
        # Padded (all-masked rows) to a multiple of the batch: one shape,
        # one compiled predict step for every call.
        batch = 256
        padded = np.zeros((-(-len(x) // batch) * batch,) + x.shape[1:], x.dtype)
        padded[: len(x)] = x
        out = self.model.predict(padded, batch_size=batch, verbose=0)[: len(x)]
        return np.asarray(out, np.float64).reshape(-1)

    def save_weights(self, path):
        """Saves the network weights (`.weights.h5`)."""
        self.model.save_weights(path)

    def load_weights(self, path):
        """Builds the network and loads weights saved by `save_weights`."""
        self.model = self._trainable()
        self.model.load_weights(path)

    def get_config(self):
        return {
            "embedding_dim": self.embedding_dim,
            "hidden_units": self.hidden_units,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "run_eagerly": self.run_eagerly,
        }
