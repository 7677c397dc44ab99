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
