"""Final training of found fusion architectures (section 3.2).

`train_final` trains a description to completion on the cached features
(frozen `f` and `g`), usually with wider fusion layers than during the
search; `finetune_multitask` then trains the whole network, `f` and `g`
unfrozen, with the multitask loss on the fused head and the two unimodal
heads.
"""

import time

import keras
import numpy as np

from mmfusion_keras.search.fusion_architecture_search import feature_widths
from mmfusion_keras.search.fusion_network import build_fusion_head
from mmfusion_keras.search.fusion_network import build_fusion_network


def train_final(
    description,
    space,
    train,
    validation,
    num_classes,
    units=64,
    epochs=40,
    batch_size=64,
    learning_rate=1e-3,
    patience=8,
    seed=0,
    run_eagerly=False,
):
    """Trains a fusion head to completion on cached features.

    Adam, early stopping on validation accuracy (best epoch restored).

    Args:
        description: list of `(m, n, p)` triplets.
        space: the `SearchSpace`.
        train, validation: `(feature dict, labels)` as in the search.
        num_classes: classes.
        units: fusion-layer width (the paper's "larger size of matrices
            W_l" for the final training).
        epochs: maximum epochs.
        batch_size, learning_rate: optimisation.
        patience: early-stopping patience (epochs).
        seed: seed of initialisation and shuffling.
        run_eagerly: passed to `compile`.

    Returns:
        `(head model, validation accuracy, seconds)`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.search.search_space import SearchSpace
    >>> rng = np.random.default_rng(0)
    >>> feats = {"x1": rng.normal(size=(16, 3)), "y1": rng.normal(size=(16, 2))}
    >>> y = rng.integers(0, 2, 16)
    >>> head, acc, _ = train_final([(1, 1, 1)], SearchSpace(1, 1, ("relu",)),
    ...                            (feats, y), (feats, y), 2, units=4, epochs=1)
    >>> 0.0 <= acc <= 1.0
    True

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, section 3.2 ("Final
        architecture").
    """
    description = space.validate(description)
    x_widths, y_widths = feature_widths(train[0], space)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    head = build_fusion_head(
        description, x_widths, y_widths, num_classes, units, space.activations
    )
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )
    names = list(head.input)
    head.fit(
        {k: train[0][k] for k in names},
        train[1],
        validation_data=({k: validation[0][k] for k in names}, validation[1]),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=patience, restore_best_weights=True
            )
        ],
        verbose=0,
    )
    p = head.predict({k: validation[0][k] for k in names}, batch_size=1024, verbose=0)
    acc = float(np.mean(np.argmax(p, -1) == np.asarray(validation[1])))
    return head, acc, time.perf_counter() - start


def finetune_multitask(
    description,
    space,
    head,
    f,
    g,
    f_layers,
    g_layers,
    train,
    validation,
    num_classes,
    epochs=10,
    batch_size=64,
    learning_rate=1e-4,
    loss_weights=None,
    seed=0,
    feature_stats=None,
):
    """Fine-tunes fusion head, `f` and `g` together with the multitask loss.

    The loss is the sum of the categorical cross-entropies of the fused
    softmax and of the two unimodal softmax outputs (weights
    `loss_weights`, default 1 each). `f`, `g` and `head` are trained in
    place (pass copies to keep the originals); `f` and `g` are set
    trainable. Early stopping on the fused head's validation accuracy.

    Args:
        description: the head's description.
        space: the `SearchSpace`.
        head: a fusion head from `train_final` (or `build_fusion_head`).
        f, g: the unimodal networks.
        f_layers, g_layers: their candidate layer names.
        train, validation: `(inputs dict for f and g, labels)`.
        num_classes: classes.
        epochs: maximum epochs.
        batch_size: batch size.
        learning_rate: Adam learning rate (small: the extractors are
            pretrained).
        loss_weights: dict with keys `"fusion"`, `"x"`, `"y"`.
        seed: seed of the shuffling.
        feature_stats: standardisation of the pooled features, as used for
            the cached features the head was trained on (see
            `build_fusion_network`).

    Returns:
        `(multitask model, fused validation accuracy, seconds)`; the model
        outputs a dict `{"fusion", "x", "y"}`.

    Reference:
        Perez-Rua et al., "MFAS", CVPR 2019, section 3.2 ("Loss function").
    """
    f.trainable = True
    g.trainable = True
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_fusion_network(
        description,
        f,
        g,
        f_layers,
        g_layers,
        num_classes,
        activations=space.activations,
        multitask=True,
        head=head,
        feature_stats=feature_stats,
    )
    loss = "sparse_categorical_crossentropy"
    weights = {"fusion": 1.0, "x": 1.0, "y": 1.0, **(loss_weights or {})}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"fusion": loss, "x": loss, "y": loss},
        loss_weights=weights,
        metrics={"fusion": ["accuracy"]},
    )
    targets = {"fusion": train[1], "x": train[1], "y": train[1]}
    val_targets = {"fusion": validation[1], "x": validation[1], "y": validation[1]}
    model.fit(
        train[0],
        targets,
        validation_data=(validation[0], val_targets),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_fusion_accuracy",
                mode="max",
                patience=max(2, epochs // 3),
                restore_best_weights=True,
            )
        ],
        verbose=0,
    )
    p = model.predict(validation[0], batch_size=512, verbose=0)["fusion"]
    acc = float(np.mean(np.argmax(p, -1) == np.asarray(validation[1])))
    return model, acc, time.perf_counter() - start
