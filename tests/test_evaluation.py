import numpy as np
import pytest
from sklearn.metrics import (
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

from imgclf.modeling.outputs import class_probabilities
from imgclf.reporting.evaluation import (
    CLASS_SCORE_COLUMNS,
    MAX_CURVE_POINTS,
    class_score_rows,
    expected_calibration_error,
    most_confident_mistakes,
    precision_recall_rows,
    prediction_rows,
    roc_rows,
    samples_per_class,
    score_predictions,
    top_k_accuracy,
)

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


def class_scores(labels, probabilities, class_names=CLASSES) -> dict[str, dict[str, object]]:
    """metrics/class_scores.csv's rows by their first cell."""
    return {row[0]: dict(zip(CLASS_SCORE_COLUMNS[1:], row[1:], strict=True))
            for row in class_score_rows(labels, probabilities, class_names)}


def test_hand_checked_scores():
    metrics = score_predictions(LABELS, PROBABILITIES, CLASSES)
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=5e-5)
    # cat: predicted for rows 0 and 5, right once; dog: rows 1-3, right twice; fox: row 4, right.
    rows = class_scores(LABELS, PROBABILITIES)
    assert list(rows) == [*CLASSES, "macro average", "weighted average"]
    assert rows["cat"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "roc_auc": 0.875}
    assert rows["dog"]["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert rows["dog"]["recall"] == 1.0
    assert rows["fox"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6), "support": 2,
                           "roc_auc": 0.9375}
    # the headline to 4 decimals (one image in 10,000), the table to 6
    assert rows["macro average"]["f1"] == pytest.approx(metrics["macro_f1"], abs=5e-5)
    assert rows["macro average"]["roc_auc"] == pytest.approx(metrics["roc_auc"], abs=5e-5)
    assert rows["macro average"]["support"] == 6 and metrics["accuracy"] == 0.6667
    assert sorted(metrics) == ["accuracy", "ece", "loss", "macro_f1", "roc_auc", "test_images"]  # the headline only
    assert metrics["macro_f1"] == pytest.approx(f1_score(LABELS, PROBABILITIES.argmax(1), average="macro"), abs=5e-5)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.5, 0.8, 0.3]))
    assert metrics["loss"] == pytest.approx(expected_loss, abs=5e-5)
    assert metrics["loss"] == pytest.approx(log_loss(LABELS, PROBABILITIES), abs=5e-5)
    assert metrics["test_images"] == 6


def test_a_class_never_predicted_scores_zero_not_an_error():
    rows = class_scores(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), ("a", "b"))
    # never predicted, yet ranked right: b's image scores 0.2 for b, the other image 0.1
    assert rows["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "roc_auc": 1.0}


def test_a_sigmoid_output_becomes_two_class_probabilities():
    np.testing.assert_allclose(class_probabilities(np.array([[0.25], [1.0]])), [[0.75, 0.25], [0.0, 1.0]])


def test_softmax_rows_are_renormalised():
    rows = class_probabilities(np.array([[0.2, 0.7999999]], dtype=np.float32))
    assert rows.sum() == pytest.approx(1.0, abs=1e-12)


def test_prediction_rows_name_the_classes():
    rows = prediction_rows(["cat/1.png", "cat/2.png"], LABELS[:2], PROBABILITIES[:2], CLASSES)
    assert rows == [("cat/1.png", "cat", "cat", 0.8), ("cat/2.png", "cat", "dog", 0.6)]


def test_roc_auc_by_hand_and_by_scikit_learn():
    # cat: positives score .8 and .3 against negatives .1 .2 .1 .5: 7 of 8 pairs ranked right.
    # fox: .8 and .3 against .1 .1 .2 .3: 7 pairs right and one tie (half) = 7.5 of 8.
    metrics = score_predictions(LABELS, PROBABILITIES, CLASSES)
    assert class_scores(LABELS, PROBABILITIES)["dog"]["roc_auc"] == 0.875
    assert metrics["roc_auc"] == pytest.approx((0.875 + 0.875 + 0.9375) / 3, abs=5e-5)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(LABELS, PROBABILITIES, multi_class="ovr"), abs=5e-5)


def test_two_classes_report_the_auc_of_the_second_class():
    labels = np.array([0, 0, 1, 1])
    probabilities = class_probabilities(np.array([[0.1], [0.6], [0.4], [0.9]]))
    assert score_predictions(labels, probabilities, ("cat", "dog"))["roc_auc"] == 0.75  # 3 of 4 pairs


def test_roc_auc_leaves_out_a_class_without_test_images():
    labels = np.array([0, 0, 1, 1])  # no fox in the test set
    probabilities = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    metrics = score_predictions(labels, probabilities, CLASSES)
    assert class_scores(labels, probabilities)["fox"]["roc_auc"] is None
    assert metrics["roc_auc"] == 1.0


def test_weighted_scores_weigh_classes_by_support_like_scikit_learn():
    labels = np.array([0, 0, 0, 0, 1, 2])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1],
                              [0.1, 0.8, 0.1], [0.1, 0.6, 0.3]])
    predicted = probabilities.argmax(axis=1)
    weighted = class_scores(labels, probabilities)["weighted average"]
    for name, sklearn_metric in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        expected = sklearn_metric(labels, predicted, average="weighted", zero_division=0)
        assert weighted[name] == pytest.approx(expected, abs=1e-6)
    accuracy = score_predictions(labels, probabilities, CLASSES)["accuracy"]
    assert weighted["recall"] == pytest.approx(accuracy, abs=5e-5) and accuracy == pytest.approx(4 / 6, abs=5e-5)


def test_expected_calibration_error_by_hand():
    # 5 bins of width 0.2. Confidences .6 .5 .5 (1 of 3 right) fall in (0.4, 0.6]: gap |1/3 - 1.6/3| = 0.2;
    # .8 .7 .8 (all right) in (0.6, 0.8]: gap |1 - 2.3/3| = 0.7/3. Each bin holds half the images.
    expected = 0.5 * 0.2 + 0.5 * 0.7 / 3
    assert expected_calibration_error(LABELS, PROBABILITIES, bins=5) == pytest.approx(expected, abs=1e-12)
    assert score_predictions(LABELS, PROBABILITIES, CLASSES, calibration_bins=5)["ece"] == pytest.approx(expected,
                                                                                                      abs=5e-5)


def test_a_perfectly_calibrated_model_has_no_calibration_error():
    labels = np.array([0, 0, 0, 1])  # 0.75 confident in class 0 every time, right 3 times of 4
    probabilities = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.0, abs=1e-12)


def test_top_k_accuracy_by_hand_and_by_scikit_learn():
    labels = np.array([2, 0, 1])
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1]])
    assert top_k_accuracy(labels, probabilities, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(labels, probabilities, 2) == pytest.approx(1 / 3)  # 2 is third in row 0, 0 in row 1
    assert top_k_accuracy(labels, probabilities, 3) == 1.0
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    probabilities = rng.dirichlet(np.ones(10), 500)
    assert top_k_accuracy(labels, probabilities, 5) == pytest.approx(
        top_k_accuracy_score(labels, probabilities, k=5), abs=1e-12)


def test_top_k_accuracy_is_reported_only_with_more_classes_than_k():
    assert "top_5_accuracy" not in score_predictions(LABELS, PROBABILITIES, CLASSES)
    assert score_predictions(LABELS, PROBABILITIES, CLASSES, top_k=2)["top_2_accuracy"] == 1.0


def test_roc_rows_follow_scikit_learn_one_curve_per_class():
    rows = roc_rows(LABELS, PROBABILITIES, CLASSES)
    assert [row[0] for row in rows] == sorted([row[0] for row in rows], key=CLASSES.index)
    for index, name in enumerate(CLASSES):
        fpr, tpr, _ = roc_curve(LABELS == index, PROBABILITIES[:, index])
        points = [(x, y) for row_name, _, x, y in rows if row_name == name]
        np.testing.assert_allclose(points, np.stack([fpr, tpr], axis=1), atol=1e-6)
        assert [point for row_name, point, _, _ in rows if row_name == name] == list(range(len(points)))


def test_two_classes_get_one_curve_of_the_second_class():
    labels = np.array([0, 0, 1, 1])
    probabilities = class_probabilities(np.array([[0.1], [0.6], [0.4], [0.9]]))
    assert {row[0] for row in roc_rows(labels, probabilities, ("cat", "dog"))} == {"dog"}
    assert {row[0] for row in precision_recall_rows(labels, probabilities, ("cat", "dog"))} == {"dog"}


def test_precision_recall_rows_run_from_low_to_full_recall():
    rows = precision_recall_rows(LABELS, PROBABILITIES, CLASSES)
    cat = [(recall, precision) for name, _, recall, precision in rows if name == "cat"]
    assert cat[0] == (0.0, 1.0) and cat[-1] == (1.0, pytest.approx(1 / 3, abs=1e-6))


def test_long_curves_are_thinned_keeping_both_ends():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 5000)
    probabilities = class_probabilities(rng.random((5000, 1)))
    rows = precision_recall_rows(labels, probabilities, ("a", "b"))
    assert len(rows) <= MAX_CURVE_POINTS
    assert rows[0][2] == 0.0 and rows[-1][2] == 1.0


def test_most_confident_mistakes_come_first():
    # wrong: row 1 (dog at 0.6) and row 5 (cat at 0.5)
    assert most_confident_mistakes(LABELS, PROBABILITIES, 10) == [1, 5]
    assert most_confident_mistakes(LABELS, PROBABILITIES, 1) == [1]


def test_samples_per_class_take_the_first_images_of_each_class():
    assert samples_per_class(LABELS, 3, 1) == [[0], [2], [4]]
    assert samples_per_class(np.array([1, 1]), 2, 5) == [[], [0, 1]]


def test_a_split_is_predicted_batch_by_batch_and_flip_averages_each_image_with_its_mirror(tmp_path):
    from imgclf.data.dataset import ImageSet, open_split, save_image_set
    from imgclf.modeling.outputs import predict_split

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 2, 3, 1), dtype=np.uint8)
    save_image_set(tmp_path / "split", ImageSet(images, np.zeros(11, np.int32), tuple(map(str, range(11))), ("a",)),
                   shard_bytes=4 * 6)  # several shards: batches cross them
    weights = rng.normal(size=(6, 3))
    batches = []

    def softmax_of_linear(batch: np.ndarray) -> np.ndarray:
        batches.append(len(batch))
        logits = batch.reshape(len(batch), -1) / 255 @ weights
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    plain = softmax_of_linear(images)
    mirrored = softmax_of_linear(np.ascontiguousarray(images[:, :, ::-1]))
    assert not np.allclose(plain, mirrored)
    batches.clear()
    with open_split(tmp_path / "split") as split:
        np.testing.assert_allclose(predict_split(softmax_of_linear, split, 4), plain, rtol=1e-12)
        assert batches == [4, 4, 3]
        np.testing.assert_allclose(predict_split(softmax_of_linear, split, 4, "flip"), (plain + mirrored) / 2,
                                   rtol=1e-12)
        with pytest.raises(ValueError, match="choose one of none, flip"):
            predict_split(softmax_of_linear, split, 4, "rotate")
