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

Over a split's files (rules `evaluate_mechanism`, `evaluate_cams_without_aggregation`): `measure_mechanism` gives
an experiment's seeds (threshold found on the val split's CAMs at `mechanism.background_fpr`) and pseudo labels
on the score split, `evaluate_ablated_cams` the row of the CAMs extracted with the aggregate zeroed. Only these
read the dataset's parts/ folder: no training or tuning step opens it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..cams.store import open_hdf5, read_cam_entry
from ..core.artifacts import ArtifactError
from ..core.runtime import progress
from ..data.parts import decode_parts, parts_path
from ..data.voc import IGNORE_INDEX, open_layout, read_label_png
from ..pseudo_labels.make import seed_label
from ..pseudo_labels.store import read_label_index
from .evaluate import evaluate_cams, seed_sweep, sweep_points

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


# --- over a split's files: only the mechanism rules call these, and only they read parts/ ------------------

def read_parts_map(layout, name: str) -> np.ndarray:
    """The (H, W) parts map of one image of the dataset (`data/parts.py`'s encoding)."""
    path = parts_path(layout.root, name)
    if not path.is_file():
        raise ArtifactError(f"parts map {path} does not exist: the mechanism measurements need the built-in "
                            f"generator's parts/ folder (dataset.source synthetic)")
    with Image.open(path) as image:
        return np.asarray(image)


def pooled_background_scores(cams_path, layout, split: str) -> np.ndarray:
    """The seeds' foreground scores at the true background pixels of every image of a split, pooled."""
    pooled = []
    with open_hdf5(cams_path) as handle:
        for name in progress(layout.names(split), desc=f"background scores of {split}"):
            cams, _ = read_cam_entry(handle, name)
            pooled.append(background_scores(cams, layout.read_mask(name, split)).astype(np.float32))
    return np.concatenate(pooled) if pooled else np.zeros(0, np.float32)


def threshold_at_rate_on(cams_path, layout, split: str, rate: float) -> tuple[float, float]:
    """(threshold, the background false-positive rate it gives there): `threshold_at_background_rate` on a
    split's CAMs (the val split's)."""
    scores = pooled_background_scores(cams_path, layout, split)
    threshold = threshold_at_background_rate(scores, rate)
    return threshold, float((scores > threshold).mean())


def label_measures(labels_of, layout, split: str, large_share: float) -> dict:
    """Part recalls and background false-positive rate of the label maps `labels_of(name, truth)` gives for every
    image of a split; with the summed counts."""
    counts, false_positives, background = empty_counts(), 0, 0
    for name in progress(layout.names(split), desc=f"parts of {split}"):
        truth = layout.read_mask(name, split)
        labels = labels_of(name, truth)
        counts = add_counts(counts, part_counts(labels, truth, read_parts_map(layout, name), large_share))
        wrong, total = background_counts(labels, truth)
        false_positives, background = false_positives + wrong, background + total
    return {**{f"{part}_recall": value for part, value in recalls(counts).items()},
            "background_fpr": false_positives / background if background else None,
            "counts": {part: value.tolist() for part, value in counts.items()}}


def seed_measures(cams_path, val_cams_path, layout, split: str, val_split: str, settings: dict) -> dict:
    """The seeds' part recalls on `split` at the background threshold whose false-positive rate on `val_split`'s
    CAMs is the configured one (`settings`: the mechanism section)."""
    threshold, val_rate = threshold_at_rate_on(val_cams_path, layout, val_split, settings["background_fpr"])
    with open_hdf5(cams_path) as handle:
        def seeds_of(name, truth):
            cams, tags = read_cam_entry(handle, name)
            if cams.shape[1:] != truth.shape:
                raise ValueError(f"CAMs of {name} in {cams_path} are {cams.shape[1:]}, its mask {truth.shape}")
            return seed_label(cams, tags, threshold)

        measures = label_measures(seeds_of, layout, split, settings["large_object_area"])
    return {"threshold": threshold, "threshold_chosen_on": val_split,
            "target_background_fpr": settings["background_fpr"], "val_background_fpr": val_rate, **measures}


def pseudo_label_measures(label_index, layout, split: str, settings: dict) -> dict:
    """The pseudo labels' part recalls and background false-positive rate on `split`, as they are."""
    paths = read_label_index(label_index)

    def labels_of(name, truth):
        if name not in paths:
            raise ValueError(f"{label_index} lists no pseudo label of {name} (split {split!r})")
        return read_label_png(paths[name], truth.shape, len(layout.class_names))

    return label_measures(labels_of, layout, split, settings["large_object_area"])


def measure_mechanism(cams_path, val_cams_path, label_index, dataset, split: str, val_split: str,
                      settings: dict) -> dict:
    """An experiment's mechanism figures on the score split: its CAM seeds at the fixed background rate (the
    threshold found on val's CAMs) and its pseudo labels. The sections `cam` and `pseudo_label` add columns to
    those rows of the table."""
    layout = open_layout(dataset)
    return {"stage": "mechanism", "split": split, "num_images": len(layout.names(split)), "settings": settings,
            "cam": seed_measures(cams_path, val_cams_path, layout, split, val_split, settings),
            "pseudo_label": pseudo_label_measures(label_index, layout, split, settings)}


def best_seed_threshold(cams_path, layout, split: str, thresholds: list[float]) -> float:
    """The background threshold whose seeds score the best mIoU on `split` (the first of equals): how
    tune_background chooses it on val."""
    _, confusions = seed_sweep(cams_path, layout, split, thresholds)
    return max(sweep_points(thresholds, confusions, layout.class_names), key=lambda point: point["miou"])["threshold"]


def aggregation_epochs(history: dict) -> dict[str, int]:
    """{"on": epochs, "of": epochs} of a classifier's training history: in how many epochs the aggregation was on.
    Never on, its aggregate was zero throughout, and the CAMs with it zeroed are the full CAMs."""
    epochs = history["epochs"]
    return {"on": sum(bool(epoch.get("aggregation")) for epoch in epochs), "of": len(epochs)}


def evaluate_ablated_cams(cams_path, val_cams_path, dataset, split: str, val_split: str, settings: dict,
                          stage: str = "cam_no_aggregation") -> dict:
    """A table row of CAMs extracted with the aggregate zeroed: the seeds' mIoU at the threshold chosen on their
    own val maps (as tune_background chooses the full CAMs'), and their mechanism figures at the fixed background
    rate, its threshold also found on their own val maps. `settings`: the cam and mechanism sections."""
    layout = open_layout(dataset)
    thresholds = settings["cam"]["bg_thresholds"]
    threshold = best_seed_threshold(val_cams_path, layout, val_split, thresholds)
    row = evaluate_cams(cams_path, layout, split, thresholds, threshold, val_split)
    return {**row, "stage": stage,
            "mechanism": seed_measures(cams_path, val_cams_path, layout, split, val_split, settings["mechanism"])}
