"""Metrics: classification (the CLI), CMU-MOSEI emotions and sentiment."""

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


def _weighted_accuracy(true, predicted):
    """Weighted accuracy of a binary task, `(TP * N / P + TN) / (2 N)`.

    The definition of Tong et al. (2017) used for CMU-MOSEI emotions (MulT's
    `weighted_accuracy`): each class weighs half, i.e. the mean of the true
    positive and true negative rates. None when one class is absent from
    `true` (the rate of the missing class is undefined).
    """
    true = np.asarray(true, bool)
    predicted = np.asarray(predicted, bool)
    p = int(true.sum())
    n = int((~true).sum())
    if p == 0 or n == 0:
        return None
    tp = int((true & predicted).sum())
    tn = int((~true & ~predicted).sum())
    return float((tp * (n / p) + tn) / (2 * n))


def emotion_metrics(
    y_true, y_score, class_names=None, threshold=0.5, head="multilabel", ties="any"
):
    """CMU-MOSEI emotion metrics in the two published conventions.

    **Per emotion (binary presence, the MulT / Tong et al. convention).**
    Emotion `c` is present when `y_true[:, c] > 0` and predicted present
    when `y_score[:, c] > threshold` (a sigmoid score above 0.5 is a logit
    above 0, MulT's `preds > 0`). Per emotion:

    * `wa`: weighted accuracy `(TP * N / P + TN) / (2 N)` (P, N = counts of
      present and absent samples), the published number. A predictor that
      never says "present" scores 0.5, not the fraction of absent samples.
      None when the emotion is always or never present in `y_true`.
    * `f1`: F1 weighted over the two classes (scikit-learn
      `average="weighted"`, as in MulT's `eval_metrics`).
    * `acc_2`: plain binary accuracy, kept for reference only: on the
      imbalanced emotions it rewards predicting "absent" (NOT comparable
      with published Acc_2/WA numbers).
    * `num_present`: P.

    `mean` holds the unweighted means of `wa` and `f1` over the emotions
    where they are defined.

    The per-emotion numbers need a head that can predict several emotions at
    once: `head="multilabel"` (six sigmoids, `mosei_heads`). With
    `head="multiclass"` (a softmax) at most one score can exceed 0.5, so
    `per_class` and `mean` are None.

    **Dominant emotion (6-way).** Over the samples with at least one
    emotion present, the true class is the emotion of highest intensity and
    the predicted class `argmax(y_score)`; `acc_6` is their accuracy and
    `f1_6` the weighted F1. Ties of the true intensities (two emotions at
    the same highest value, common with MOSEI's 1/3 steps) are handled by
    `ties`: `"any"` (default) counts the prediction correct when it names
    any of the tied emotions (it becomes the true class for F1, else the
    first tied one does); `"first"` takes the lowest class index (what
    `np.argmax` and `emotion_targets` do). `num_ties_6` counts such samples.
    Ties of predicted scores go to the lowest index (`np.argmax`).

    Args:
        y_true: `(N, C)` intensities (>= 0) or 0/1 presence labels.
        y_score: `(N, C)` predicted scores in [0, 1].
        class_names: optional names, default the six MOSEI emotions when
            `C == 6`, else `class_0 ...`.
        threshold: an emotion is predicted present when its score is above
            it.
        head: `"multilabel"` or `"multiclass"`, the head `y_score` comes
            from.
        ties: `"any"` or `"first"`, the tie rule of `acc_6` (see above).

    Returns:
        A JSON-serializable dict: `acc_6`, `f1_6`, `num_samples`,
        `num_samples_6`, `num_ties_6`, `per_class` (name -> `{"wa", "f1",
        "acc_2", "num_present"}`) and `mean` (`{"wa", "f1"}`).

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.metrics import emotion_metrics
    >>> y = np.array([[1, 0, 0, 0, 0, 0], [0, 2, 1, 0, 0, 0]], "float32")
    >>> s = np.array([[.9, .1, .2, 0, 0, 0], [.2, .3, .8, 0, 0, 0]])
    >>> m = emotion_metrics(y, s)
    >>> m["acc_6"], m["per_class"]["anger"]["wa"], m["per_class"]["sad"]["wa"]
    (0.5, 1.0, 0.5)
    """
    from sklearn.metrics import accuracy_score
    from sklearn.metrics import f1_score

    from mmfusion_keras.models.mosei_heads import EMOTIONS

    if head not in ("multilabel", "multiclass"):
        raise ValueError(
            "Received an invalid value for argument `head`, expected one of "
            f"('multilabel', 'multiclass'). Received: head={head!r}"
        )
    if ties not in ("any", "first"):
        raise ValueError(
            "Received an invalid value for argument `ties`, expected one of "
            f"('any', 'first'). Received: ties={ties!r}"
        )
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
    dominant = y_true[has_emotion]
    pred_6 = y_score[has_emotion].argmax(axis=1)
    is_top = dominant == dominant.max(axis=1, keepdims=True)
    true_6 = is_top.argmax(axis=1)  # the first tied emotion
    if ties == "any":
        hit = is_top[np.arange(len(pred_6)), pred_6]
        true_6 = np.where(hit, pred_6, true_6)
    result = {
        "acc_6": float(accuracy_score(true_6, pred_6)) if len(true_6) else None,
        "f1_6": (
            float(f1_score(true_6, pred_6, average="weighted", zero_division=0))
            if len(true_6)
            else None
        ),
        "num_samples": int(len(y_true)),
        "num_samples_6": int(has_emotion.sum()),
        "num_ties_6": int((is_top.sum(axis=1) > 1).sum()),
        "per_class": None,
        "mean": None,
    }
    if head == "multiclass":
        return result
    predicted = y_score > threshold
    per_class = {}
    for c, name in enumerate(class_names):
        per_class[name] = {
            "wa": _weighted_accuracy(present[:, c], predicted[:, c]),
            "f1": float(
                f1_score(
                    present[:, c],
                    predicted[:, c],
                    average="weighted",
                    zero_division=0,
                )
            ),
            "acc_2": float(accuracy_score(present[:, c], predicted[:, c])),
            "num_present": int(present[:, c].sum()),
        }
    was = [m["wa"] for m in per_class.values() if m["wa"] is not None]
    result["per_class"] = per_class
    result["mean"] = {
        "wa": float(np.mean(was)) if was else None,
        "f1": float(np.mean([m["f1"] for m in per_class.values()])),
    }
    return result


def sentiment_metrics(y_true, y_pred):
    """CMU-MOSEI / MOSI sentiment metrics of a regression output in [-3, 3].

    Both binary conventions of the literature, plus the rest of MulT's
    `eval_mosei_senti`:

    * `acc_2_non_negative` / `f1_2_non_negative`: non-negative (`>= 0`)
      against negative (`< 0`), over all samples (the convention of
      `datasets.cmu_mosei.sentiment_classes`).
    * `acc_2_non_zero` / `f1_2_non_zero`: positive (`> 0`) against negative
      (`< 0`), over the samples whose true score is not 0 (MulT's
      `exclude_zero=True`, the Acc_2 most papers compare with); a
      prediction of exactly 0 counts as negative, as `preds > 0` does.
    * `acc_7` (`acc_5`): `round(clip(y, -3, 3))` (`clip(y, -2, 2)`) of
      prediction and truth are equal. Rounding is NumPy's half-to-even
      (`np.round`, as MulT's `multiclass_acc`): 0.5 -> 0, 1.5 -> 2, -2.5 ->
      -2.
    * `mae`: mean absolute error (unclipped); `corr`: Pearson correlation
      (None when either side is constant).
    * F1 scores are weighted over the two classes (MulT:
      `average="weighted"`).

    Args:
        y_true: `(N,)` (or `(N, 1)`) true sentiment scores.
        y_pred: predictions of the same shape.

    Returns:
        A JSON-serializable dict with the keys above, `num_samples` and
        `num_non_zero`.

    Example:

    >>> from mmfusion_keras.metrics import sentiment_metrics
    >>> m = sentiment_metrics([-1.0, 0.0, 2.0], [-0.4, 0.3, 1.6])
    >>> m["acc_2_non_zero"], m["acc_7"], round(m["mae"], 3)
    (1.0, 0.6666666666666666, 0.433)
    """
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        y_pred = y_pred[:, 0]
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(
            "sentiment_metrics expects two non-empty (N,) arrays of sentiment "
            f"scores of the same shape. Received shapes {np.shape(y_true)} and "
            f"{np.shape(y_pred)}."
        )

    def binary(true, pred):
        if len(true) == 0:
            return None, None
        f1 = f1_score(true, pred, average="weighted", zero_division=0)
        return float(np.mean(true == pred)), float(f1)

    acc_nn, f1_nn = binary(y_true >= 0, y_pred >= 0)
    non_zero = y_true != 0
    acc_nz, f1_nz = binary(y_true[non_zero] > 0, y_pred[non_zero] > 0)

    def classes(y, bound):
        return np.round(np.clip(y, -bound, bound))

    corr = None
    if np.std(y_true) > 0 and np.std(y_pred) > 0:
        corr = float(np.corrcoef(y_pred, y_true)[0, 1])
    return {
        "acc_2_non_negative": acc_nn,
        "f1_2_non_negative": f1_nn,
        "acc_2_non_zero": acc_nz,
        "f1_2_non_zero": f1_nz,
        "acc_7": float(np.mean(classes(y_pred, 3) == classes(y_true, 3))),
        "acc_5": float(np.mean(classes(y_pred, 2) == classes(y_true, 2))),
        "mae": float(np.mean(np.abs(y_pred - y_true))),
        "corr": corr,
        "num_samples": int(len(y_true)),
        "num_non_zero": int(non_zero.sum()),
    }
