"""Output heads and losses for the CMU-MOSEI emotion task (6 emotions).

CMU-MOSEI annotates each segment with six emotion intensities in [0, 3]
(happy, sad, anger, surprise, disgust, fear; `load_cmu_mosei(...,
target="emotions")` returns them as `(N, 6)`). Papers evaluate it two ways
(Panchal, Table 2), and both heads here map a feature vector to one of them:

* `head="multilabel"`: 6 sigmoid units, one per emotion, trained with
  binary cross-entropy on presence labels `intensity > 0`
  (`emotion_targets(y, "multilabel")`); several emotions can be predicted
  present at once (MOSEI segments often carry several). Per-emotion
  weighted accuracy and F1 (the published convention) and Acc_6.
* `head="multiclass"`: a 6-way softmax, trained with sparse categorical
  cross-entropy on the dominant emotion `argmax(intensity)`
  (`emotion_targets(y, "multiclass")`); Acc_6 and F1 only: a softmax
  predicts at most one emotion above 0.5, so per-emotion presence numbers
  from it are meaningless. Samples without any emotion (all intensities 0)
  have no dominant emotion: `emotion_targets` returns their index so
  callers can drop them.

`mmfusion_keras.metrics.emotion_metrics(y, scores, head=...)` computes the
metrics from either head's scores (tie rules documented there);
`metrics.sentiment_metrics` covers the sentiment regression task (both
Acc_2 conventions, Acc_7, Acc_5, MAE, correlation). The hierarchical delta-attention model and the MulT
baseline share these functions, so their heads are identical.
"""

import keras
import numpy as np

EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
HEADS = ("multilabel", "multiclass")


def _check_head(head):
    if head not in HEADS:
        raise ValueError(
            f"Received an invalid value for argument `head`, expected one of "
            f"{HEADS}. Received: head={head!r}"
        )


def add_mosei_head(features, head="multilabel", num_classes=6, name="emotion"):
    """Adds the emotion output layer to a `(batch, features)` tensor.

    Args:
        features: a symbolic `(batch, d)` tensor.
        head: `"multilabel"` (sigmoid per class) or `"multiclass"`
            (softmax over classes).
        num_classes: number of emotions (6 for CMU-MOSEI).
        name: name of the output Dense layer.

    Returns:
        The symbolic `(batch, num_classes)` probabilities (float32 even
        under mixed precision).

    Example:

    >>> import keras
    >>> from mmfusion_keras.models.mosei_heads import add_mosei_head
    >>> x = keras.Input((16,))
    >>> tuple(add_mosei_head(x, "multiclass").shape)
    (None, 6)
    """
    _check_head(head)
    activation = "sigmoid" if head == "multilabel" else "softmax"
    return keras.layers.Dense(
        num_classes, activation=activation, dtype="float32", name=name
    )(features)


def mosei_loss(head="multilabel"):
    """The training loss of a head: binary or sparse categorical CE."""
    _check_head(head)
    if head == "multilabel":
        return keras.losses.BinaryCrossentropy()
    return keras.losses.SparseCategoricalCrossentropy()


def emotion_targets(intensities, head="multilabel"):
    """Training targets for a head from `(N, 6)` emotion intensities.

    Args:
        intensities: `(N, C)` array of intensities (>= 0).
        head: `"multilabel"` -> `(N, C)` float32 presence (`> 0`);
            `"multiclass"` -> `(N,)` int32 dominant emotion (argmax).

    Returns:
        `(targets, has_emotion)`, with `has_emotion` the `(N,)` boolean
        array of samples with at least one emotion present (the only
        samples for which the multiclass target is meaningful).
    """
    _check_head(head)
    y = np.asarray(intensities, dtype="float32")
    if y.ndim != 2:
        raise ValueError(
            "emotion_targets expects (N, num_classes) emotion intensities. "
            f"Received shape {y.shape}."
        )
    has_emotion = (y > 0).any(axis=1)
    if head == "multilabel":
        return (y > 0).astype("float32"), has_emotion
    return y.argmax(axis=1).astype("int32"), has_emotion
