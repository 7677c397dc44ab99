"""CMU-MOSEI emotion and sentiment metrics on hand-computed, imbalanced cases."""

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.metrics import emotion_metrics
from mmfusion_keras.metrics import sentiment_metrics
from mmfusion_keras.models.mosei_heads import add_mosei_head
from mmfusion_keras.testing import assert_raises_with_message

# 8 samples, 6 emotions, imbalanced: happy present in 1 of 8, sad in 3,
# anger never; samples 4-7 have no emotion.
Y = np.zeros((8, 6), "float32")
Y[0, 0] = 1.0  # happy only
Y[1, 1] = 2.0  # sad only
Y[2, [1, 3]] = [1.0, 1.0]  # sad and surprise tied at the top
Y[3, [1, 4]] = [0.3, 2.0]  # sad and disgust, disgust dominant


def _scores():
    s = np.full((8, 6), 0.1)
    s[0, 0] = s[1, 0] = 0.9  # happy predicted for samples 0 and 1
    s[1, 1] = 0.8  # sample 1: sad too (two emotions at once)
    s[2, 3] = 0.7  # sample 2: surprise, one of its tied top emotions
    s[3, 1] = 0.5  # exactly at the threshold: not "present"
    s[3, 4] = 0.6
    return s


def test_never_present_predictor_scores_half_weighted_accuracy():
    m = emotion_metrics(Y, np.zeros_like(Y))
    happy = m["per_class"]["happy"]
    assert happy["acc_2"] == 7 / 8  # plain accuracy rewards "never"
    assert happy["wa"] == 0.5  # (0 * 7/1 + 7) / (2 * 7)
    assert m["per_class"]["sad"]["wa"] == 0.5  # (0 + 5) / (2 * 5)
    assert m["per_class"]["anger"]["wa"] is None  # never present: undefined
    assert m["per_class"]["happy"]["num_present"] == 1


def test_weighted_accuracy_and_f1_per_emotion():
    m = emotion_metrics(Y, _scores())
    happy = m["per_class"]["happy"]
    # happy: P=1, N=7; predicted {0, 1}: TP=1, TN=6.
    assert happy["wa"] == pytest.approx((1 * 7 / 1 + 6) / (2 * 7))
    assert happy["acc_2"] == pytest.approx(7 / 8)
    # F1 weighted by support: present F1 2/3 (1 sample), absent 12/13 (7).
    assert happy["f1"] == pytest.approx((1 * 2 / 3 + 7 * 12 / 13) / 8)
    # sad: present in {1, 2, 3}; predicted {1} (3 sits at 0.5, not above).
    # TP=1, TN=5, P=3, N=5 -> (1 * 5/3 + 5) / 10.
    assert m["per_class"]["sad"]["wa"] == pytest.approx((5 / 3 + 5) / 10)
    # sad F1: present P=1 R=1/3 -> 1/2 (3 samples); absent P=5/7 R=1 ->
    # 5/6 (5 samples).
    assert m["per_class"]["sad"]["f1"] == pytest.approx((3 * 0.5 + 5 * 5 / 6) / 8)
    defined = [m["per_class"][e]["wa"] for e in ("happy", "sad", "surprise")]
    defined += [m["per_class"][e]["wa"] for e in ("disgust",)]
    assert m["mean"]["wa"] == pytest.approx(np.mean(defined))
    assert m["per_class"]["anger"]["wa"] is None
    # The threshold is exclusive: a score of exactly 0.5 is "absent".
    assert emotion_metrics(Y, _scores(), threshold=0.45)["per_class"]["sad"][
        "wa"
    ] == pytest.approx((2 * 5 / 3 + 5) / 10)


def test_acc_6_ties_and_multiclass_head():
    s = _scores()
    # Samples with an emotion: 0 (happy, right), 1 (sad; argmax happy 0.9:
    # wrong), 2 (sad = surprise tied; predicted surprise), 3 (disgust, right).
    any_tie = emotion_metrics(Y, s)
    assert any_tie["num_samples_6"] == 4 and any_tie["num_ties_6"] == 1
    assert any_tie["acc_6"] == pytest.approx(3 / 4)
    first = emotion_metrics(Y, s, ties="first")
    assert first["acc_6"] == pytest.approx(2 / 4)  # sample 2's label is sad
    from sklearn.metrics import f1_score

    assert any_tie["f1_6"] == pytest.approx(
        f1_score([0, 1, 3, 4], [0, 0, 3, 4], average="weighted")
    )
    assert first["f1_6"] == pytest.approx(
        f1_score([0, 1, 1, 4], [0, 0, 3, 4], average="weighted")
    )
    multiclass = emotion_metrics(Y, s, head="multiclass")
    assert multiclass["per_class"] is None and multiclass["mean"] is None
    assert multiclass["acc_6"] == any_tie["acc_6"]


def test_emotion_metric_errors():
    assert_raises_with_message(
        lambda: emotion_metrics(Y, _scores()[:, :5]),
        r"same shape. Received shapes \(8, 6\) and \(8, 5\)",
    )
    assert_raises_with_message(
        lambda: emotion_metrics(Y, _scores(), ties="last"),
        r"argument `ties`, expected one of \('any', 'first'\). Received: ties='last'",
    )
    assert_raises_with_message(
        lambda: emotion_metrics(Y, _scores(), head="softmax"),
        r"argument `head`.*Received: head='softmax'",
    )


def test_multilabel_head_can_predict_several_emotions():
    x = keras.Input((2,))
    sigmoid = keras.Model(x, add_mosei_head(x, "multilabel"))
    softmax = keras.Model(x, add_mosei_head(x, "multiclass"))
    kernel = np.zeros((2, 6), "float32")
    kernel[0, :2] = 5.0  # happy and sad both strongly on for input [1, 0]
    for model in (sigmoid, softmax):
        model.layers[-1].set_weights([kernel, np.zeros(6, "float32")])
    inputs = np.array([[1.0, 0.0]], "float32")
    both = ops.convert_to_numpy(sigmoid(inputs))[0]
    assert (both > 0.5).sum() == 2
    one = ops.convert_to_numpy(softmax(inputs))[0]
    assert (one > 0.5).sum() == 0  # a softmax splits the mass between them


# Imbalanced: 4 zeros among 7 true scores.
TRUE = np.array([0.0, 0.0, 0.0, 2.0, -1.0, 0.5, 3.0])
PRED = np.array([0.2, -0.1, 0.0, 1.4, -2.6, -0.5, 2.4])


def test_sentiment_binary_conventions():
    m = sentiment_metrics(TRUE, PRED)
    # >= 0 vs < 0 over all 7: true TTTTFTT, pred TFTTFFT -> 5 of 7.
    assert m["acc_2_non_negative"] == pytest.approx(5 / 7)
    # > 0 vs < 0 over the 4 non-zero: true TFTT, pred TFFT -> 3 of 4.
    assert m["num_non_zero"] == 4
    assert m["acc_2_non_zero"] == pytest.approx(3 / 4)
    # F1 weighted, non-zero: positive F1 0.8 (3 samples), negative 2/3 (1).
    assert m["f1_2_non_zero"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 4)
    # Non-negative: true-T (6): P=4/4, R=4/6 -> 0.8; true-F (1): P=1/3, R=1
    # -> 0.5.
    assert m["f1_2_non_negative"] == pytest.approx((6 * 0.8 + 1 * 0.5) / 7)


def test_sentiment_acc_7_acc_5_mae_and_correlation():
    m = sentiment_metrics(TRUE, PRED[:, None])  # (N, 1) predictions work
    # round(clip(., -3, 3)): true 0 0 0 2 -1 0 3, pred 0 0 0 1 -3 0 2.
    assert m["acc_7"] == pytest.approx(4 / 7)
    # clip to [-2, 2]: true 0 0 0 2 -1 0 2, pred 0 0 0 1 -2 0 2.
    assert m["acc_5"] == pytest.approx(5 / 7)
    assert m["mae"] == pytest.approx((0.2 + 0.1 + 0 + 0.6 + 1.6 + 1.0 + 0.6) / 7)
    t, p = TRUE - TRUE.mean(), PRED - PRED.mean()
    assert m["corr"] == pytest.approx(
        (t * p).sum() / np.sqrt((t**2).sum() * (p**2).sum())
    )
    # Half-to-even rounding, as np.round in MulT: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2.
    halves = sentiment_metrics([1.0, 2.0, -2.0], [0.5, 1.5, -2.5])
    assert halves["acc_7"] == pytest.approx(2 / 3)
    assert sentiment_metrics([1.0, 2.0], [1.0, 1.0])["corr"] is None


def test_sentiment_metric_errors():
    assert_raises_with_message(
        lambda: sentiment_metrics(TRUE, PRED[:5]),
        r"two non-empty \(N,\) arrays.*Received shapes \(7,\) and \(5,\)",
    )
