import numpy as np
import pytest

from wsss.evaluation.metrics import confusion_matrix, iou_from_confusion, summarise


def direct_iou(truth, prediction, num_classes):
    """Per-class IoU by boolean masks, independent of the confusion-matrix code."""
    valid = truth != 255
    prediction = np.where(prediction == 255, 0, prediction)
    ious = []
    for c in range(num_classes):
        t, p = (truth == c) & valid, (prediction == c) & valid
        union = (t | p).sum()
        ious.append(np.nan if union == 0 else (t & p).sum() / union)
    return np.array(ious)


def test_iou_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, (40, 50))
    truth[rng.random(truth.shape) < 0.1] = 255
    prediction = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 5, truth.shape))
    prediction[rng.random(truth.shape) < 0.05] = 255
    prediction[prediction == 4] = 1  # class 4 never predicted
    expected = direct_iou(truth, prediction, 6)  # class 5 absent everywhere
    got = iou_from_confusion(confusion_matrix(truth, prediction, 6))
    np.testing.assert_allclose(got, expected)
    summary = summarise(confusion_matrix(truth, prediction, 6), [str(i) for i in range(6)])
    assert summary["miou"] == pytest.approx(np.nanmean(expected))
    assert summary["per_class_iou"]["5"] is None


def test_perfect_and_all_background_predictions():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:6, 2:6] = 3
    assert summarise(confusion_matrix(truth, truth, 4), "abcd")["miou"] == 1.0
    background = summarise(confusion_matrix(truth, np.zeros_like(truth), 4), "abcd")
    assert background["miou"] == pytest.approx((84 / 100) / 2)


def test_sizes_and_values_are_checked():
    with pytest.raises(ValueError, match="differ"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.full((2, 2), 7), np.zeros((2, 2)), 2)


def test_foreground_recall_and_precision_tell_partial_from_spilled_masks():
    truth = np.zeros((4, 8), np.int64)
    truth[:, :4] = 1  # a 16-pixel object
    partial = np.zeros_like(truth)
    partial[:2, :4] = 1  # half of it, nothing outside
    spilled = np.zeros_like(truth)
    spilled[:, :8] = 1  # all of it and as much background
    half = summarise(confusion_matrix(truth, partial, 2), "ab")
    over = summarise(confusion_matrix(truth, spilled, 2), "ab")
    assert (half["foreground_recall"], half["foreground_precision"]) == (0.5, 1.0)
    assert (over["foreground_recall"], over["foreground_precision"]) == (1.0, 0.5)
    wrong_class = summarise(confusion_matrix(truth, np.where(truth == 1, 2, 0), 3), "abc")
    assert wrong_class["foreground_recall"] == 0.0 and wrong_class["foreground_precision"] == 0.0
