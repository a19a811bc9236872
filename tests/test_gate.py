"""The gate (wsss/evaluation/gate.py, bench/gate.py): figures from the plain CAM baseline's files alone, on a hand-made run
folder whose answers are worked out by hand; the probe on hand-made features."""

import importlib.util
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from wsss.cams.store import CamWriter
from wsss.core.config import validate_config
from wsss.data.parts import encode_parts, parts_path
from wsss.data.voc import write_label_png
from wsss.evaluation.gate import (GATE, PROBE_CRITERION, baseline_files, measure_gate, probe_figures, ridge_probe,
                                  run_config, verdicts)
from wsss.models.backbones import build_vgg

from conftest import REPO

BACKBONE = {"width": 0.125, "batch_norm": True}


def fake_config() -> dict:
    """A resolved config; no pairwise CRF term, so a pseudo label is the argmax of its unary scores."""
    return validate_config({
        "dataset": {"name": "fake", "source": "synthetic", "root": "resources/fake"},
        "classifier": {"backbone": BACKBONE},
        "crf": {"gaussian_compat": 0, "bilateral_compat": 0},
        "pseudo_labels": {"bg_power": "val", "bg_powers": [1, 4]}})


def write_image(root, split_tags, name, truth, instances, marking):
    Image.fromarray(np.full((*truth.shape, 3), 128, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    write_label_png(root / "SegmentationClass" / f"{name}.png", truth)
    Image.fromarray(encode_parts(instances, marking), mode="L").save(parts_path(root, name))
    split_tags[name] = sorted({int(v) - 1 for v in np.unique(truth) if v})


def object_image(cls: int, rows: int, cols: int, marking_rows: int):
    """20 x 20: one object of class `cls` in the top-left rows x cols, its first `marking_rows` rows marking."""
    truth, instances, marking = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.int32), np.zeros((20, 20), bool)
    truth[:rows, :cols], instances[:rows, :cols] = cls + 1, 1
    marking[:marking_rows, :cols] = True
    return truth, instances, marking


def make_run(run):
    """A run folder of the baseline's files. Val: image a, a large object of class 0 (rows 0-9: 40 marking
    pixels, 160 body pixels); image b, a small one of class 1 (rows 0-2, columns 0-4: 5 marking, 10 body).

    CAMs: a's marking 1.0, its body 0.6 on rows 2-5 and 0.05 on rows 6-9, 80 of its background pixels 0.4 and the
    other 120 0.1; b's marking 0.9, its body 0.3, its background 0.1. 585 background pixels: at a rate of 0.15, 87
    may exceed the threshold, which is then 0.1 (the 80 at 0.4 exceed it)."""
    root = run / "resources" / "fake"
    for folder in ("JPEGImages", "SegmentationClass", "parts", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nzero\none\n")
    splits = {"train": {}, "val": {}}
    for name, cls in (("t1", 0), ("t2", 0), ("t3", 1)):
        write_image(root, splits["train"], name, *object_image(cls, 8, 8, 2))
    write_image(root, splits["val"], "a", *object_image(0, 10, 20, 2))
    write_image(root, splits["val"], "b", *object_image(1, 3, 5, 1))
    for split, tags in splits.items():
        (root / f"ImageSets/Segmentation/{split}.txt").write_text("\n".join(tags) + "\n")
        (root / f"ImageSets/Segmentation/{split}_cls.txt").write_text(
            "\n".join(f"{name} {' '.join(map(str, classes))}" for name, classes in tags.items()) + "\n")

    results = run / "results" / "fake"
    (results / "cam" / "tuning").mkdir(parents=True)
    (results / "pretrain").mkdir(parents=True)
    cam_a = np.full((20, 20), 0.1, np.float32)
    cam_a[10:14, :] = 0.4
    cam_a[:2], cam_a[2:6], cam_a[6:10] = 1.0, 0.6, 0.05
    cam_b = np.full((20, 20), 0.1, np.float32)
    cam_b[:3, :5] = 0.3
    cam_b[0, :5] = 0.9
    with CamWriter(results / "cam" / "tuning" / "cams_val.h5", ["a", "b"]) as writer:
        writer.write("a", cam_a[None], [0])
        writer.write("b", cam_b[None], [1])
    (results / "cam" / "tuning" / "background.json").write_text(json.dumps({"bg_power": 1, "bg_threshold": 0.3}))
    torch.manual_seed(0)
    torch.save(build_vgg(BACKBONE).state_dict(), results / "pretrain" / "backbone.pt")
    (run / "results" / "config.yaml").write_text(yaml.safe_dump(fake_config()))
    # another experiment's files, unreadable: the gate must not open them
    (results / "rca" / "tuning").mkdir(parents=True)
    (results / "rca" / "tuning" / "cams_val.h5").write_bytes(b"not the baseline")
    (results / "rca" / "tuning" / "background.json").write_text("{broken")
    return run


def test_the_gates_figures_on_a_hand_made_run_are_the_worked_out_ones(tmp_path):
    figures = measure_gate(make_run(tmp_path / "run"))
    assert figures["seed_threshold"] == pytest.approx(0.1, abs=1e-3)
    assert figures["seed_background_fpr"] == pytest.approx(80 / 585)
    # seeds: a's marking and body rows 2-5 (0.6) above 0.1, rows 6-9 (0.05) not; all of b
    assert figures["seed_body_recall"] == pytest.approx(90 / 170)
    assert figures["seed_marking_recall"] == 1.0
    assert figures["seed_large_body_recall"] == pytest.approx(0.5)
    assert figures["seed_large_marking_recall"] == 1.0
    # pseudo labels at bg_power 1 without pairwise terms: foreground where the CAM exceeds 1 - CAM, i.e. 0.5
    assert figures["crf_bg_power"] == 1
    assert figures["crf_body_recall"] == pytest.approx(80 / 170)
    assert figures["crf_large_body_recall"] == pytest.approx(0.5)
    assert figures["crf_marking_recall"] == 1.0 and figures["crf_background_fpr"] == 0.0
    # the probe: train objects of classes 0, 0, 1 (chance: class 0's share of val's objects 0 and 1)
    assert (figures["probe_train_objects"], figures["probe_val_objects"]) == (3, 2)
    assert figures["probe_chance"] == 0.5 and 0.0 <= figures["probe_accuracy"] <= 1.0


def test_the_gate_reads_the_baseline_and_the_pretrained_backbone_only(tmp_path):
    run = make_run(tmp_path / "run")
    files = baseline_files(run, run_config(run))
    results = run / "results" / "fake"
    for role, path in files.items():
        if role not in ("dataset", "manifest"):
            assert path.is_relative_to(results / "cam") or path.is_relative_to(results / "pretrain"), role


def test_the_script_prints_the_verdicts_and_writes_json(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    spec = importlib.util.spec_from_file_location("gate_script", REPO / "bench" / "gate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(run / "results"), str(run), "--json", str(tmp_path / "gate.json")]) == 0
    printed = capsys.readouterr().out
    assert "| mean |" in printed and all(criterion in printed for criterion in (*GATE, PROBE_CRITERION))
    written = json.loads((tmp_path / "gate.json").read_text())
    assert written["mean"]["seed_body_recall"] == pytest.approx(90 / 170)
    # large body 0.5 <= 0.5 passes; marking 1.0 >= 0.9 passes; CRF body 0.47 <= 0.8 passes
    assert written["verdicts"]["mean"]["marking recall of the seeds"] is True
    assert written["verdicts"]["mean"]["large-object body recall of the seeds"] is True
    assert written["verdicts"]["mean"]["body recall after the CRF"] is True


def separable_objects(rng, per_class: int, centres: np.ndarray):
    classes = np.repeat(np.arange(len(centres)), per_class)
    return centres[classes] + 0.3 * rng.standard_normal((len(classes), centres.shape[1])), classes


def test_the_probe_separates_classes_of_hand_made_features():
    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(3, 8)
    train_x, train_y = separable_objects(rng, 20, centres)
    val_x, val_y = separable_objects(rng, 10, centres)
    assert (ridge_probe(train_x, train_y, val_x, 3) == val_y).all()
    figures = probe_figures(train_x, train_y, val_x, val_y, 3)
    assert figures["probe_accuracy"] == 1.0 and figures["probe_chance"] == pytest.approx(1 / 3)
    shuffled = probe_figures(train_x, rng.permutation(train_y), val_x, val_y, 3)
    assert shuffled["probe_accuracy"] < 0.7


def test_the_verdicts_follow_the_bounds():
    good = {"seed_large_body_recall": 0.3, "seed_marking_recall": 0.95, "crf_body_recall": 0.6,
            "probe_accuracy": 0.9, "probe_chance": 0.2}
    assert all(verdicts(good).values())
    bad = {**good, "seed_large_body_recall": 0.7, "probe_accuracy": 0.5}
    answers = verdicts(bad)
    assert not answers["large-object body recall of the seeds"] and not answers[PROBE_CRITERION]
    assert answers["marking recall of the seeds"] and answers["body recall after the CRF"]
    assert verdicts({**good, "seed_large_body_recall": None})["large-object body recall of the seeds"] is None
