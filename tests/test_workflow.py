"""The whole workflow through Snakemake, as a subprocess, on a tiny configuration (a few minutes)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

TINY_CONFIG = {
    "seed": 0,
    "dataset": {"name": "tiny", "source": "synthetic", "root": "resources/tiny",
                "synthetic": {"splits": {"train": 60, "val": 20}, "options": {"image_size": 64}}},
    "compute": {"device": "cpu", "loader_workers": 0, "threads": 2},
    "experiments": {
        "cam": {},
        "rca_oaa": {"classifier": {"rca": {"contrast": True, "aggregation": True}, "accumulate_cams": True},
                    "cam": {"protocol": "accumulated"}},
        "oracle": {"segmentation": {"labels": "ground_truth"}},
    },
    "classifier": {"backbone": {"width": 0.125, "batch_norm": True}, "input_size": 64, "epochs": 6,
                   "batch_size": 10, "lr": 0.02, "new_layer_lr_mult": 1.0, "lr_milestones": [5],
                   "rca": {"embed_dim": 16, "bank_size": 20, "clusters": 3}},
    "pretrain": {"images": 30, "epochs": 2, "batch_size": 10},
    "cam": {"scales": [1.0, 0.75], "batch_size": 16, "shards": 2},
    "pseudo_labels": {"shards": 2},
    "segmentation": {"backbone": {"name": "resnet", "layers": [1, 1, 1, 1], "width_per_group": 8},
                     "freeze_batchnorm": False,
                     "crop_size": 64, "batch_size": 8, "iterations": 40, "lr": 0.01, "classifier_lr_mult": 1.0,
                     "checkpoint_every": 20},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=workdir)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    result = snakemake(workdir, "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_every_stage_leaves_its_artifact(finished_run):
    exp = finished_run / "results" / "tiny" / "cam"
    for relative in ["classifier/model.pt", "classifier/history.json", "cams/cams.h5", "cams/shard-0-of-2.h5",
                     "cams/shard-1-of-2.h5", "pseudo_labels/index.txt", "pseudo_labels/shard-0-of-2",
                     "segmentation/model.pt", "segmentation/predictions_val", "metrics/cam_train.json",
                     "metrics/pseudo_label_train.json", "metrics/segmentation_val.json",
                     "figures/cam_overlays.png", "figures/classifier_curve.png", "figures/pseudo_labels.png",
                     "figures/segmentation_val.png", "logs/train_classifier.log"]:
        assert (exp / relative).exists(), relative
    assert len(list((exp / "segmentation/predictions_val").glob("*.png"))) == 20
    assert (finished_run / "resources/tiny/diagnostics.json").exists()
    assert (exp / "checkpoints/classifier/last.pt").exists()  # beside the outputs, for resume
    rca = finished_run / "results" / "tiny" / "rca_oaa"
    assert (rca / "classifier/accumulated_cams.h5").exists() and (rca / "metrics/pseudo_label_train.json").exists()
    oracle = finished_run / "results" / "tiny" / "oracle"
    assert (oracle / "metrics/segmentation_val.json").exists()
    assert not (oracle / "classifier").exists()  # the oracle trains no classifier



@pytest.mark.slow
def test_every_classifier_starts_from_the_pretrained_backbone(finished_run):
    import torch

    backbone = torch.load(finished_run / "results/tiny/pretrain/backbone.pt", weights_only=True)
    assert (finished_run / "resources/tiny_pretrain/ImageSets/Segmentation/train.txt").read_text().count("\n") == 30
    for experiment in ("cam", "rca_oaa"):
        model = torch.load(finished_run / f"results/tiny/{experiment}/classifier/model.pt", weights_only=False)
        assert model["settings"]["backbone"]["weights"] == "results/tiny/pretrain/backbone.pt"
        assert model["model"]["backbone.features.0.weight"].shape == backbone["features.0.weight"].shape
    assert "| pretrain | pretrain_backbone |" in (finished_run / "results/benchmark.md").read_text()  # its wall time


@pytest.mark.slow
def test_benchmark_table_and_seed_beats_all_background(finished_run):
    with open(finished_run / "results" / "benchmark.csv") as handle:
        rows = list(csv.DictReader(handle))
    stages = {(row["experiment"], row["stage"], row["split"]) for row in rows}
    assert stages == {(experiment, stage, split) for experiment in ("cam", "rca_oaa")
                      for stage, split in (("cam", "train"), ("pseudo_label", "train"), ("segmentation", "val"))
                      } | {("oracle", "segmentation", "val")}
    assert all(row["dataset"] == "tiny" for row in rows)
    assert "| cam |" in (finished_run / "results" / "benchmark.md").read_text()
    cam_metrics = json.loads((finished_run / "results/tiny/cam/metrics/cam_train.json").read_text())
    # all background: IoU of background only (foreground classes score 0)
    confusion = cam_metrics["confusion_matrix"]
    truth_per_class = [sum(row) for row in confusion]
    present = sum(1 for count in truth_per_class if count > 0)
    all_background_miou = truth_per_class[0] / sum(truth_per_class) / present
    seed_miou = float(next(row["miou"] for row in rows if row["stage"] == "cam"))
    assert seed_miou > all_background_miou + 0.05


@pytest.mark.slow
def test_a_second_run_has_nothing_to_do_and_a_deleted_artifact_is_rebuilt_alone(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "--dry-run")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    target = "results/tiny/cam/metrics/pseudo_label_train.json"
    (finished_run / target).unlink()
    result = snakemake(finished_run, target, "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = result.stderr[result.stderr.index("Job stats"):].split("Reasons")[0]
    assert "evaluate_pseudo_labels" in jobs and "train_classifier" not in jobs and "make_pseudo_labels" not in jobs
    assert (finished_run / target).exists()


@pytest.mark.slow
def test_lint_reports_no_errors(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_a_bad_config_stops_before_any_job_naming_the_key(tmp_path):
    bad = dict(TINY_CONFIG, classifier={"epochs": -1})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = snakemake(tmp_path, "--configfile", "bad.yaml", "--dry-run")
    assert result.returncode != 0 and "classifier.epochs" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()
