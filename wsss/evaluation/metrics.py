"""Segmentation metrics: confusion matrix, per-class IoU, mIoU (VOC convention: 255 in the truth is ignored)."""

from __future__ import annotations

import numpy as np

from ..data.voc import IGNORE_INDEX


def confusion_matrix(truth: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = truth, columns = prediction.

    Pixels whose truth is 255 are skipped. A predicted 255 (an ignored pseudo-label pixel) counts as
    background, as in the usual pseudo-label evaluation: leaving pixels unlabelled is not free.
    """
    truth = np.asarray(truth).reshape(-1).astype(np.int64)
    prediction = np.asarray(prediction).reshape(-1).astype(np.int64)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth and prediction differ in size: {truth.size} vs {prediction.size}")
    valid = truth != IGNORE_INDEX
    truth, prediction = truth[valid], prediction[valid]
    prediction = np.where(prediction == IGNORE_INDEX, 0, prediction)
    if truth.size and (truth.max() >= num_classes or prediction.max() >= num_classes):
        raise ValueError(f"label value outside 0..{num_classes - 1} (or 255)")
    return np.bincount(truth * num_classes + prediction, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN for a class absent from both truth and prediction."""
    confusion = confusion.astype(np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def foreground_recall_precision(confusion: np.ndarray) -> tuple[float, float]:
    """Pooled over the foreground classes (1..): the share of true object pixels labelled with their class
    (recall: low means partial masks) and the share of pixels given a class that truly are of it
    (precision: low means masks spill over the background or other objects)."""
    confusion = confusion.astype(np.float64)
    hits = np.trace(confusion) - confusion[0, 0]
    truth, predicted = confusion[1:].sum(), confusion[:, 1:].sum()
    return (float(hits / truth) if truth else 0.0), (float(hits / predicted) if predicted else 0.0)


def summarise(confusion: np.ndarray, class_names) -> dict:
    """mIoU (over classes present in truth or prediction), per-class IoU, pixel accuracy, foreground
    recall and precision, the matrix."""
    iou = iou_from_confusion(confusion)
    total = confusion.sum()
    recall, precision = foreground_recall_precision(confusion)
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "pixel_accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "foreground_recall": recall,
        "foreground_precision": precision,
        "per_class_iou": {name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, iou)},
        "confusion_matrix": confusion.astype(int).tolist(),
    }
