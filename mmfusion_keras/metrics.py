"""Classification metrics reported by the CLI, computed with scikit-learn."""

import numpy as np


def classification_metrics(y_true, y_pred, class_names=None):
    """Accuracy, WA, UA, macro F1 and the confusion matrix.

    Following the emotion-recognition convention of the MBAF papers,
    weighted accuracy (WA) is the overall accuracy (each sample weighs the
    same) and unweighted accuracy (UA) is the mean of per-class recalls
    (each class weighs the same).

    Args:
        y_true: int array of true labels.
        y_pred: int array of predicted labels.
        class_names: optional list of class names, index = label.

    Returns:
        A JSON-serializable dict.
    """
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.metrics import confusion_matrix
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(
            "Expected two non-empty 1-D label arrays of the same length. "
            f"Received shapes {y_true.shape} and {y_pred.shape}."
        )
    labels = (
        list(range(len(class_names)))
        if class_names is not None
        else sorted(set(y_true) | set(y_pred))
    )
    accuracy = float(accuracy_score(y_true, y_pred))
    return {
        "accuracy": accuracy,
        "weighted_accuracy": accuracy,
        "unweighted_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": [class_names[i] for i in labels] if class_names else labels,
        "num_samples": int(len(y_true)),
    }


def emotion_metrics(y_true, y_score, class_names=None, threshold=0.5):
    """CMU-MOSEI emotion metrics of Panchal's Table 2: Acc_6, F1, Acc_2, F1.

    * `acc_6`: 6-way accuracy, `argmax(y_score) == argmax(y_true)`, over the
      samples with at least one emotion present (the others have no
      dominant emotion); `f1_6` is the weighted F1 of that 6-way task.
    * per class `c`: `acc_2` is the binary accuracy of presence
      (`y_true[:, c] > 0` against `y_score[:, c] >= threshold`) over all
      samples, and `f1` its weighted F1 (weighted over the two classes,
      the usual choice for the imbalanced MOSEI emotions).

    Works with both heads of `mmfusion_keras.models.mosei_heads`: sigmoid
    scores of the multi-label head, or softmax scores of the 6-way head
    (whose per-class binary decisions then use the same threshold).

    Args:
        y_true: `(N, C)` intensities or 0/1 presence labels.
        y_score: `(N, C)` predicted scores in [0, 1].
        class_names: optional names, default the six MOSEI emotions when
            `C == 6`, else `class_0 ...`.
        threshold: score at which an emotion counts as predicted present.

    Returns:
        A JSON-serializable dict: `acc_6`, `f1_6`, `num_samples`,
        `num_samples_6`, and `per_class` (name -> `{"acc_2", "f1"}`).

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.metrics import emotion_metrics
    >>> y = np.array([[1, 0, 0, 0, 0, 0], [0, 2, 1, 0, 0, 0]], "float32")
    >>> s = np.array([[.9, .1, .2, 0, 0, 0], [.2, .3, .8, 0, 0, 0]])
    >>> m = emotion_metrics(y, s)
    >>> m["acc_6"], m["per_class"]["anger"]["acc_2"]
    (0.5, 1.0)
    """
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true, dtype="float64")
    y_score = np.asarray(y_score, dtype="float64")
    if y_true.shape != y_score.shape or y_true.ndim != 2 or len(y_true) == 0:
        raise ValueError(
            "emotion_metrics expects two non-empty (N, num_classes) arrays of "
            f"the same shape. Received shapes {y_true.shape} and "
            f"{y_score.shape}."
        )
    n_classes = y_true.shape[1]
    if class_names is None:
        from mmfusion_keras.models.mosei_heads import EMOTIONS

        class_names = (
            list(EMOTIONS)
            if n_classes == len(EMOTIONS)
            else [f"class_{i}" for i in range(n_classes)]
        )
    if len(class_names) != n_classes:
        raise ValueError(
            f"emotion_metrics got {len(class_names)} class names for "
            f"{n_classes} classes: {list(class_names)}."
        )
    present = y_true > 0
    has_emotion = present.any(axis=1)
    true_6 = y_true[has_emotion].argmax(axis=1)
    pred_6 = y_score[has_emotion].argmax(axis=1)
    result = {
        "acc_6": float(accuracy_score(true_6, pred_6)) if len(true_6) else None,
        "f1_6": (
            float(f1_score(true_6, pred_6, average="weighted", zero_division=0))
            if len(true_6)
            else None
        ),
        "num_samples": int(len(y_true)),
        "num_samples_6": int(has_emotion.sum()),
        "per_class": {},
    }
    predicted = y_score >= threshold
    for c, name in enumerate(class_names):
        result["per_class"][name] = {
            "acc_2": float(accuracy_score(present[:, c], predicted[:, c])),
            "f1": float(
                f1_score(
                    present[:, c],
                    predicted[:, c],
                    average="weighted",
                    zero_division=0,
                )
            ),
        }
    return result
