"""Stage: evaluate CAM seeds (background-threshold sweep) and label maps against the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cams.store import open_hdf5, read_cam_entry
from ..core.artifacts import ArtifactError
from ..core.runtime import progress
from ..data.voc import IGNORE_INDEX, VOCLayout, open_layout, read_label_png
from ..pseudo_labels.make import seed_label
from ..pseudo_labels.store import read_label_index
from .metrics import confusion_matrix, summarise


def seed_sweep(cams_path: str | Path, dataset: str | Path | VOCLayout, split: str,
               thresholds: list[float]) -> tuple[list[str], np.ndarray]:
    """The split's names and one confusion matrix of its CAM seeds per background threshold."""
    layout = open_layout(dataset)
    num_classes = len(layout.class_names)
    names = layout.names(split)
    confusions = np.zeros((len(thresholds), num_classes, num_classes), np.int64)
    with open_hdf5(cams_path) as handle:
        for name in progress(names, desc=f"CAM seeds of {split}"):
            cams, tags = read_cam_entry(handle, name)
            truth = layout.read_mask(name, split)
            if cams.shape[1:] != truth.shape:
                raise ArtifactError(f"CAMs of {name} in {cams_path} are {cams.shape[1:]}, its mask "
                                    f"{layout.label_path(name, split)} {truth.shape}")
            for index, threshold in enumerate(thresholds):
                confusions[index] += confusion_matrix(truth, seed_label(cams, tags, threshold), num_classes)
    return names, confusions


def sweep_points(thresholds: list[float], confusions: np.ndarray, class_names) -> list[dict]:
    """[{"threshold", "miou"}] of a seed sweep (`seed_sweep`'s confusion matrices)."""
    return [{"threshold": t, "miou": summarise(c, class_names)["miou"]} for t, c in zip(thresholds, confusions)]


def evaluate_cams(cams_path: str | Path, dataset: str | Path | VOCLayout, split: str, thresholds: list[float],
                  threshold: float | None = None, chosen_on: str | None = None) -> dict:
    """mIoU of CAM seeds at every background threshold. The row's metrics are those at `threshold` (chosen
    elsewhere: on the val split, `chosen_on`), or, without one, at the threshold best on this split's own masks;
    that best one is recorded either way as the oracle (`oracle_threshold`, `oracle_miou`)."""
    layout = open_layout(dataset)
    thresholds = sorted(set(thresholds) | ({threshold} if threshold is not None else set()))
    names, confusions = seed_sweep(cams_path, layout, split, thresholds)
    sweep = sweep_points(thresholds, confusions, layout.class_names)
    oracle = max(range(len(thresholds)), key=lambda i: sweep[i]["miou"])
    chosen = oracle if threshold is None else thresholds.index(threshold)
    return {"stage": "cam", "split": split, "num_images": len(names), "threshold": thresholds[chosen],
            "threshold_chosen_on": split if threshold is None else chosen_on,
            "oracle_threshold": thresholds[oracle], "oracle_miou": sweep[oracle]["miou"], "sweep": sweep,
            **summarise(confusions[chosen], layout.class_names)}


def evaluate_label_maps(label_paths: dict[str, Path], dataset: str | Path | VOCLayout, split: str, stage: str) -> dict:
    """mIoU of label maps (pseudo labels or predictions); 255 predictions count as background.

    Also reports the fraction of ignored pixels and the mIoU over labelled pixels only (precision view).
    """
    layout = open_layout(dataset)
    num_classes = len(layout.class_names)
    names = layout.names(split)
    missing = [name for name in names if name not in label_paths]
    if missing:
        raise ArtifactError(f"no label map for {len(missing)} images of split {split!r}, e.g. {missing[0]}")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    labelled_confusion = np.zeros_like(confusion)
    ignored = total = 0
    for name in progress(names, desc=f"evaluating {stage}"):
        truth = layout.read_mask(name, split)
        prediction = read_label_png(label_paths[name], truth.shape, num_classes)
        confusion += confusion_matrix(truth, prediction, num_classes)
        labelled = prediction != IGNORE_INDEX
        labelled_confusion += confusion_matrix(truth[labelled], prediction[labelled], num_classes)
        ignored += int((~labelled).sum())
        total += prediction.size
    return {"stage": stage, "split": split, "num_images": len(names), **summarise(confusion, layout.class_names),
            "ignored_fraction": ignored / max(total, 1),
            "labelled_miou": summarise(labelled_confusion, layout.class_names)["miou"]}


def evaluate_pseudo_labels(index_path: str | Path, dataset: str | Path | VOCLayout, split: str) -> dict:
    return evaluate_label_maps(read_label_index(index_path), dataset, split, "pseudo_label")
