"""Which parts of each object a label map covers: the measurements behind the question whether RCA's mechanism can
work on a dataset (the built-in one writes every object's body and marking, `data/parts.py`).

Pure functions on arrays. A label map holds 0 for background and 1 + c for class c (255 = ignore), as the CAM
seeds, pseudo labels and VOC masks do; `truth` is the true label map, `parts` the parts map of the same image
(0 none, 2k - 1 on the body of object k, 2k on its marking).

- The seeds' threshold at a background false-positive rate: `background_scores` of every image of a split,
  pooled, then `threshold_at_background_rate`. A seed pixel is foreground where the largest CAM of the image's
  tags exceeds the threshold (`pseudo_labels.seed_label`), so the rate is the share of background scores above it.
- Part recall: `part_counts` per image (pixels of each part labelled with their object's class, among all
  objects and among large ones), summed over images with `add_counts`, then `recalls`.
"""

from __future__ import annotations

import numpy as np

from .data.parts import decode_parts
from .data.voc import IGNORE_INDEX

LARGE_OBJECT_SHARE = 0.15
PART_KEYS = ("body", "marking", "large_body", "large_marking")


def foreground_scores(cams: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) the seed's foreground score: the largest of the (K, H, W) CAMs of the image's tags, 0 without tags."""
    cams = np.asarray(cams)
    return cams.max(0) if len(cams) else np.zeros(shape, np.float32)


def background_scores(cams: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The foreground scores (`foreground_scores`) at the image's true background pixels (truth == 0), flat."""
    return foreground_scores(cams, truth.shape)[np.asarray(truth) == 0]


def threshold_at_background_rate(scores: np.ndarray, rate: float) -> float:
    """The lowest threshold t at which at most `rate` of the background `scores` exceed t.

    Seeds made at t then label at most that share of the background pixels as foreground (ties below t can make
    it less)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a background rate lies in [0, 1], got {rate}")
    scores = np.sort(np.ravel(np.asarray(scores, np.float64)))
    if scores.size == 0:
        raise ValueError("no background pixels to set a threshold on")
    allowed = int(np.floor(rate * scores.size + 1e-9))
    if allowed >= scores.size:
        return float(np.nextafter(scores[0], -np.inf))
    return float(scores[scores.size - allowed - 1])


def background_counts(labels: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(background pixels labelled foreground, background pixels) of one label map; 255 labels are not
    foreground."""
    background = np.asarray(truth) == 0
    labels = np.asarray(labels)[background]
    return int(((labels != 0) & (labels != IGNORE_INDEX)).sum()), int(background.sum())


def object_class(truth: np.ndarray, instance: np.ndarray) -> int:
    """The label value (1 + class) of one object: the most frequent true label on its pixels, ignore excluded."""
    values = np.asarray(truth)[instance]
    values = values[values != IGNORE_INDEX]
    if values.size == 0:
        return IGNORE_INDEX
    return int(np.bincount(values).argmax())


def empty_counts() -> dict[str, np.ndarray]:
    """{part: [pixels labelled with their object's class, pixels]} at zero, for every key of PART_KEYS."""
    return {key: np.zeros(2, np.int64) for key in PART_KEYS}


def part_counts(labels: np.ndarray, truth: np.ndarray, parts: np.ndarray,
                large_share: float = LARGE_OBJECT_SHARE) -> dict[str, np.ndarray]:
    """Per part (body, marking), the pixels labelled with their object's class and the part's pixels, over every
    object of one image and over its large objects (visible area, body and marking, above `large_share` of the
    image)."""
    labels, truth = np.asarray(labels), np.asarray(truth)
    instances, marking = decode_parts(parts)
    counts = empty_counts()
    for instance_id in np.unique(instances[instances > 0]):
        instance = instances == instance_id
        correct = labels == object_class(truth, instance)
        large = instance.sum() > large_share * instance.size
        for part, cells in (("body", instance & ~marking), ("marking", instance & marking)):
            tally = np.array([(correct & cells).sum(), cells.sum()], np.int64)
            counts[part] += tally
            if large:
                counts[f"large_{part}"] += tally
    return counts


def add_counts(total: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sum of two `part_counts` (a new dict)."""
    return {key: total[key] + counts[key] for key in total}


def recalls(counts: dict[str, np.ndarray]) -> dict[str, float | None]:
    """{part: share of its pixels labelled with their object's class} (None where a part has no pixel)."""
    return {key: (float(hit / total) if total else None) for key, (hit, total) in counts.items()}
