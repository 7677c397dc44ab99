"""`classification_metrics` on hand-computed imbalanced cases (issue 20)."""

import numpy as np
import pytest

from mmfusion_keras.metrics import classification_metrics
from mmfusion_keras.testing.conformance import assert_raises_with_message


def test_all_one_class_predictions_on_an_imbalanced_set():
    # labels [0,0,0,1], all predicted 0: 3 of 4 right; recalls 1 and 0;
    # F1 of class 0 = 2*3 / (3 + 4) = 6/7, of class 1 = 0.
    m = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0])
    assert m["accuracy"] == m["weighted_accuracy"] == 0.75
    assert m["unweighted_accuracy"] == 0.5
    assert m["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)
    assert m["confusion_matrix"] == [[3, 0], [1, 0]]
    assert m["per_class"]["0"] == {
        "support": 3,
        "recall": 1.0,
        "precision": 0.75,
        "f1": pytest.approx(6 / 7),
    }
    assert m["per_class"]["1"]["support"] == 1 and m["per_class"]["1"]["f1"] == 0.0
    assert m["note"] is None


def test_accuracy_ua_and_macro_f1_are_three_different_numbers():
    # true  0 0 1 1 1 2 ; pred 0 0 1 0 0 2
    # accuracy 4/6; recalls 2/2, 1/3, 1/1 -> UA 7/9;
    # predicted counts 4, 1, 1 -> F1 2*2/(2+4), 2*1/(3+1), 2*1/(1+1).
    m = classification_metrics([0, 0, 1, 1, 1, 2], [0, 0, 1, 0, 0, 2], ["a", "b", "c"])
    assert m["weighted_accuracy"] == pytest.approx(4 / 6)
    assert m["unweighted_accuracy"] == pytest.approx(7 / 9)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["labels"] == ["a", "b", "c"]
    assert [m["per_class"][c]["support"] for c in "abc"] == [2, 3, 1]
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 4)


def test_absent_classes_leave_ua_and_macro_f1_on_the_same_classes():
    names = ["a", "b", "c", "d"]
    m = classification_metrics([0, 0, 1, 1, 1, 2], [0, 0, 1, 0, 0, 2], names)
    assert m["unweighted_accuracy"] == pytest.approx(7 / 9)  # 3 classes
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # not / 4
    assert m["classes_evaluated"] == ["a", "b", "c"]
    assert m["per_class"]["d"] == {
        "support": 0,
        "recall": None,
        "precision": 0.0,
        "f1": None,
    }
    assert m["note"] == (
        "1 of 4 classes have no samples in the labels (['d']): UA and macro-F1 "
        "average the 3 classes present."
    )
    assert np.array(m["confusion_matrix"]).shape == (4, 4)
    # A perfect prediction of a folder that covers 5 of 10 classes.
    labels = np.repeat(np.arange(5), 3)
    perfect = classification_metrics(labels, labels, [str(i) for i in range(10)])
    assert perfect["accuracy"] == perfect["unweighted_accuracy"] == 1.0
    assert perfect["macro_f1"] == 1.0
    assert perfect["note"].startswith("5 of 10 classes have no samples")


def test_predictions_into_an_absent_class_are_errors():
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["unweighted_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    # F1: a = 2*1/(2+1), b = 2*2/(2+2); c (no samples) is not averaged.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["per_class"]["c"]["precision"] == 0.0


def test_matches_scikit_learn_when_every_class_is_present():
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y_true = np.concatenate([np.arange(4), rng.integers(0, 4, 60)])
    y_pred = np.where(rng.random(64) < 0.6, y_true, rng.integers(0, 4, 64))
    m = classification_metrics(y_true, y_pred, list("wxyz"))
    assert m["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert m["unweighted_accuracy"] == pytest.approx(
        balanced_accuracy_score(y_true, y_pred)
    )
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_bad_labels_are_refused():
    assert_raises_with_message(
        lambda: classification_metrics([0, 1], [0, 3], ["a", "b"]),
        r"Expected labels in 0\.\.1 \(2 class names\)\. Received labels \[3\]\.",
    )
    assert_raises_with_message(
        lambda: classification_metrics([0, 1], [0]),
        r"Received shapes \(2,\) and \(1,\)",
    )
