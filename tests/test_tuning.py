"""The choices made on the val split (wsss/evaluation/tuning.py): the best threshold and bg_power, from val's images only."""

import numpy as np
import pytest

from wsss.cams.store import CamWriter
from wsss.data.sources.synthetic import generate_dataset
from wsss.data.voc import VOCLayout, write_label_png
from wsss.evaluation.tuning import tune_background

from conftest import TINY_OPTIONS, tiny_settings

CRF = tiny_settings()["crf"]


@pytest.fixture(scope="module")
def three_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuning") / "data"
    generate_dataset(root, {"train": 6, "val": 6, "test": 6}, seed=5, options=TINY_OPTIONS)
    return root


def write_val_cams(layout: VOCLayout, path, inside: float, outside: float) -> None:
    """CAMs of the val images made from their masks: `inside` on each tagged class's pixels, `outside` elsewhere."""
    with CamWriter(path) as writer:
        for name in layout.names("val"):
            mask = layout.read_mask(name, "val")
            tags = sorted(int(value) - 1 for value in np.unique(mask) if 0 < value < 255)
            cams = np.stack([np.where(mask == tag + 1, inside, outside) for tag in tags]) if tags else \
                np.zeros((0, *mask.shape))
            writer.write(name, cams, tags)


def settings(bg_power, bg_powers=(1, 8)):
    return {"cam": {"bg_thresholds": [0.2, 0.4, 0.7]}, "crf": CRF,
            "pseudo_labels": {"mode": "crf", "bg_power": bg_power, "bg_powers": list(bg_powers), "min_confidence": 0}}


def test_the_threshold_and_bg_power_are_the_best_on_val(three_splits, tmp_path):
    layout = VOCLayout(three_splits)
    write_val_cams(layout, tmp_path / "val.h5", inside=0.6, outside=0.3)
    tuning = tune_background(tmp_path / "val.h5", layout, "val", settings("val"), workers=2)
    # seeds are exact for thresholds between 0.3 and 0.6; the background wins at 1 - 0.3 = 0.7 > 0.3 only for p = 1
    assert tuning["bg_threshold"] == 0.4 and tuning["bg_power"] == 1 and tuning["bg_power_chosen_on"] == "val"
    assert [point["threshold"] for point in tuning["threshold_sweep"]] == [0.2, 0.4, 0.7]
    assert tuning["threshold_sweep"][1]["miou"] == pytest.approx(1.0)
    sweep = {point["bg_power"]: point["miou"] for point in tuning["bg_power_sweep"]}
    assert sweep[1] > sweep[8]
    fixed = tune_background(tmp_path / "val.h5", layout, "val", settings(4), workers=1)
    assert (fixed["bg_power"], fixed["bg_power_chosen_on"], fixed["bg_power_sweep"]) == (4, "config", [])


def test_no_image_of_the_test_split_reaches_a_choice(three_splits, tmp_path):
    layout = VOCLayout(three_splits)
    write_val_cams(layout, tmp_path / "val.h5", inside=0.55, outside=0.35)
    before = tune_background(tmp_path / "val.h5", layout, "val", settings("val"))
    assert before["images"] == layout.names("val") and not set(before["images"]) & set(layout.names("test"))
    for name in layout.names("test"):  # masks of the test split turned to noise: nothing may change
        write_label_png(layout.label_path(name, "test"), np.full(layout.read_mask(name, "test").shape, 3, np.uint8))
        (layout.root / "JPEGImages" / f"{name}.jpg").write_bytes(b"not an image")
    assert tune_background(tmp_path / "val.h5", layout, "val", settings("val")) == before
