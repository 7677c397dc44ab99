"""Classification metrics reported by the CLI, computed with scikit-learn."""

import numpy as np


def classification_metrics(y_true, y_pred, class_names=None):
    """Accuracy, WA, UA, macro F1, per-class scores and the confusion matrix.

    Following the emotion-recognition convention of the MBAF papers,
    weighted accuracy (WA) is the overall accuracy (each sample weighs the
    same) and unweighted accuracy (UA) is the mean of per-class recalls
    (each class weighs the same).

    UA and macro-F1 average over the same classes: those present in
    `y_true` (support > 0). A class without samples has no recall, so it
    cannot enter UA; counting it as F1 = 0 in macro-F1 would mix two
    denominators in one report (a perfect prediction of a folder covering 5
    of 10 classes would score UA 1.0 but macro-F1 0.5). When some classes
    of `class_names` are absent, `note` says which; predictions *into* an
    absent class still count as errors (accuracy, the recall of the true
    class, the confusion matrix).

    Args:
        y_true: int array of true labels (class indices).
        y_pred: int array of predicted labels.
        class_names: optional list of class names, index = label.

    Returns:
        A JSON-serializable dict: `accuracy` (= `weighted_accuracy`),
        `unweighted_accuracy`, `macro_f1`, `confusion_matrix` (rows = true
        class, over all `labels`), `labels`, `num_samples`, `per_class`
        (name -> `support`, `recall`, `precision`, `f1`; `recall` and `f1`
        are `None` for a class without samples), `classes_evaluated` (the
        classes UA and macro-F1 average over) and `note` (`None`, or which
        classes are absent).

    Example:

    >>> m = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], ["a", "b", "c"])
    >>> m["weighted_accuracy"], m["unweighted_accuracy"], round(m["macro_f1"], 4)
    (0.75, 0.5, 0.4286)
    >>> m["classes_evaluated"], m["per_class"]["c"]["support"]
    (['a', 'b'], 0)
    """
    from sklearn.metrics import confusion_matrix

    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(
            "Expected two non-empty 1-D label arrays of the same length. "
            f"Received shapes {y_true.shape} and {y_pred.shape}."
        )
    if class_names is not None:
        labels = list(range(len(class_names)))
        outside = sorted(set(y_true.tolist() + y_pred.tolist()) - set(labels))
        if outside:
            raise ValueError(
                f"Expected labels in 0..{len(labels) - 1} ({len(labels)} class "
                f"names). Received labels {outside}."
            )
    else:
        labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    names = [class_names[i] for i in labels] if class_names else labels
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    per_class, recalls, f1s = {}, [], []
    for i, name in enumerate(names):
        recall = correct[i] / support[i] if support[i] else None
        precision = correct[i] / predicted[i] if predicted[i] else 0.0
        f1 = None
        if support[i]:
            total = support[i] + predicted[i]
            f1 = 2.0 * correct[i] / total  # = 2PR / (P + R)
            recalls.append(recall)
            f1s.append(f1)
        per_class[str(name)] = {
            "support": int(support[i]),
            "recall": None if recall is None else float(recall),
            "precision": float(precision),
            "f1": None if f1 is None else float(f1),
        }
    present = [names[i] for i in range(len(names)) if support[i]]
    absent = [names[i] for i in range(len(names)) if not support[i]]
    note = None
    if absent:
        note = (
            f"{len(absent)} of {len(names)} classes have no samples in the labels "
            f"({absent}): UA and macro-F1 average the {len(present)} classes present."
        )
    accuracy = float(correct.sum() / len(y_true))
    return {
        "accuracy": accuracy,
        "weighted_accuracy": accuracy,
        "unweighted_accuracy": float(np.mean(recalls)),
        "macro_f1": float(np.mean(f1s)),
        "confusion_matrix": matrix.tolist(),
        "labels": names,
        "num_samples": int(len(y_true)),
        "per_class": per_class,
        "classes_evaluated": present,
        "note": note,
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
