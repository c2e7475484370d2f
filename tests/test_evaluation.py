import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss

from imgclf.evaluation import class_probabilities, prediction_rows, score_predictions

CLASSES = ("cat", "dog", "fox")
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBABILITIES = np.array([
    [0.8, 0.1, 0.1],  # cat, right
    [0.3, 0.6, 0.1],  # cat taken for a dog
    [0.1, 0.7, 0.2],  # dog, right
    [0.2, 0.5, 0.3],  # dog, right
    [0.1, 0.1, 0.8],  # fox, right
    [0.5, 0.2, 0.3],  # fox taken for a cat
])


def test_hand_checked_scores():
    metrics = score_predictions(LABELS, PROBABILITIES, CLASSES)
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    # cat: predicted for rows 0 and 5, right once; dog: rows 1-3, right twice; fox: row 4, right.
    assert metrics["per_class"]["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_class"]["dog"]["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["per_class"]["dog"]["recall"] == 1.0
    assert metrics["per_class"]["fox"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6),
                                           "support": 2}
    assert metrics["macro_f1"] == pytest.approx(f1_score(LABELS, PROBABILITIES.argmax(1), average="macro"), abs=1e-6)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.5, 0.8, 0.3]))
    assert metrics["loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert metrics["loss"] == pytest.approx(log_loss(LABELS, PROBABILITIES), abs=1e-6)
    assert metrics["test_images"] == 6


def test_a_class_never_predicted_scores_zero_not_an_error():
    metrics = score_predictions(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), ("a", "b"))
    assert metrics["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_a_sigmoid_output_becomes_two_class_probabilities():
    np.testing.assert_allclose(class_probabilities(np.array([[0.25], [1.0]])), [[0.75, 0.25], [0.0, 1.0]])


def test_softmax_rows_are_renormalised():
    rows = class_probabilities(np.array([[0.2, 0.7999999]], dtype=np.float32))
    assert rows.sum() == pytest.approx(1.0, abs=1e-12)


def test_prediction_rows_name_the_classes():
    rows = prediction_rows(["cat/1.png", "cat/2.png"], LABELS[:2], PROBABILITIES[:2], CLASSES)
    assert rows == [("cat/1.png", "cat", "cat", 0.8), ("cat/2.png", "cat", "dog", 0.6)]
