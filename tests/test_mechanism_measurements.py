"""The mechanism measurements over a split's files (wsss/evaluation/mechanism.py: measure_mechanism), on a hand-made dataset
whose answers are worked out by hand: the seeds' threshold found on the val split's CAMs at the configured
background rate, then the body and marking recall of the score split's seeds at it, and of its pseudo labels."""

import numpy as np
import pytest

from wsss.cams.store import CamWriter
from wsss.core.artifacts import file_sha256
from wsss.data.parts import PARTS_FOLDER, write_parts
from wsss.data.voc import VOCLayout, write_label_png
from wsss.evaluation.mechanism import measure_mechanism, threshold_at_rate_on

SETTINGS = {"background_fpr": 0.3, "large_object_area": 0.15}
HIGH, LOW = 0.75, 0.5  # CAM values above and below the threshold val gives (0.6875), exact in float16


def val_images():
    """Two 4 x 2 all-background val images whose one CAM takes the values 0, 1/16, ..., 15/16 between them: at a
    rate of 0.3, 4 of the 16 background pixels may exceed the threshold (4.8 rounded down), so it is 11/16 and the
    rate it gives on val is 4/16."""
    values = (np.arange(16, dtype=np.float32) / 16).reshape(2, 4, 2)
    return {"v1": (values[0][None], [0]), "v2": (values[1][None], [0])}


def score_image():
    """A 10 x 10 image. Object 1 (class 0, label 1): rows 0-2, 30 pixels, its marking row 0, a large object.
    Object 2 (class 2, label 3): rows 6-7, columns 6-8, 6 pixels, its marking (6, 6) and (6, 7), small. The seeds at
    11/16 cover object 1's marking and 5 of its 20 body pixels, all of object 2, and 8 of the 64 background pixels."""
    instances = np.zeros((10, 10), np.int32)
    marking = np.zeros((10, 10), bool)
    instances[0:3, :] = 1
    marking[0, :] = True
    instances[6:8, 6:9] = 2
    marking[6, 6:8] = True
    truth = np.where(instances == 1, 1, np.where(instances == 2, 3, 0)).astype(np.uint8)
    first, second = np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32)
    first[0:3, :] = LOW
    first[0, :] = HIGH
    first[1, :5] = HIGH
    first[9, :8] = HIGH  # background given class 0
    second[6:8, 6:9] = HIGH
    return truth, instances, marking, np.stack([first, second])


@pytest.fixture
def hand_made(tmp_path):
    """A dataset in VOC layout (classes background, a, b, c) with the images above, their parts, the CAMs of both
    splits and a pseudo-label index of the score image."""
    root = tmp_path / "data"
    for folder in ("SegmentationClass", PARTS_FOLDER, "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "classes.txt").write_text("background\na\nb\nc\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("v1\nv2\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("s1\n")
    with CamWriter(tmp_path / "val.h5") as writer:
        for name, (cams, tags) in val_images().items():
            write_label_png(root / "SegmentationClass" / f"{name}.png", np.zeros(cams.shape[1:], np.uint8))
            writer.write(name, cams, tags)
    truth, instances, marking, cams = score_image()
    write_label_png(root / "SegmentationClass/s1.png", truth)
    write_parts(root / PARTS_FOLDER / "s1.png", instances, marking)
    with CamWriter(tmp_path / "train.h5") as writer:
        writer.write("s1", cams, [0, 2])
    labels = truth.copy()
    labels[instances == 2] = 0  # the pseudo label misses object 2 ...
    labels[9, :] = 1  # ... and spills over 10 background pixels
    labels[4, :] = 255  # ignored: not a false positive
    (tmp_path / "labels").mkdir()
    write_label_png(tmp_path / "labels/s1.png", labels)
    (tmp_path / "labels/index.txt").write_text(f"s1 s1.png {file_sha256(tmp_path / 'labels/s1.png')}\n")
    return VOCLayout(root), tmp_path


def test_the_threshold_is_found_on_the_val_split_at_or_below_the_rate(hand_made):
    layout, folder = hand_made
    assert threshold_at_rate_on(folder / "val.h5", layout, "val", 0.3) == (11 / 16, 0.25)
    assert threshold_at_rate_on(folder / "val.h5", layout, "val", 0.25) == (11 / 16, 0.25)
    assert threshold_at_rate_on(folder / "val.h5", layout, "val", 0.2) == (12 / 16, 3 / 16)


def test_seeds_and_pseudo_labels_recall_what_was_worked_out_by_hand(hand_made):
    layout, folder = hand_made
    figures = measure_mechanism(folder / "train.h5", folder / "val.h5", folder / "labels/index.txt", layout, "train",
                                "val", SETTINGS)
    seeds = figures["cam"]
    assert (seeds["threshold"], seeds["threshold_chosen_on"], seeds["val_background_fpr"]) == (11 / 16, "val", 0.25)
    assert seeds["background_fpr"] == 8 / 64  # the score split's own rate: not the one aimed at on val
    assert seeds["body_recall"] == pytest.approx((5 + 4) / 24) and seeds["marking_recall"] == 1.0
    assert seeds["large_body_recall"] == pytest.approx(5 / 20) and seeds["large_marking_recall"] == 1.0
    labels = figures["pseudo_label"]
    assert labels["body_recall"] == pytest.approx(20 / 24) and labels["marking_recall"] == pytest.approx(10 / 12)
    assert labels["large_body_recall"] == 1.0 and labels["large_marking_recall"] == 1.0
    assert labels["background_fpr"] == pytest.approx(10 / 64)


def test_a_dataset_without_parts_is_named(hand_made):
    layout, folder = hand_made
    (layout.root / PARTS_FOLDER / "s1.png").unlink()
    with pytest.raises(Exception, match=r"parts/s1\.png does not exist"):
        measure_mechanism(folder / "train.h5", folder / "val.h5", folder / "labels/index.txt", layout, "train", "val",
                          SETTINGS)
