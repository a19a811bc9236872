"""The mechanism measurements through Snakemake: config/tiny.yaml plus an `rca` experiment (inference CAMs, the
aggregation on), run in a copy of the tiny run with an audit hook in every job that records each open of the
dataset's parts/ folder (a few minutes: rca's jobs only)."""

import csv
import json
import os

import numpy as np
import pytest
import yaml

from conftest import TINY_CONFIG, copy_run, snakemake
from wsss.data.voc import open_layout

MECHANISM_RULES = {"evaluate_mechanism", "evaluate_cams_without_aggregation"}  # the only readers of parts/
RECALLS = ("body_recall", "marking_recall", "large_body_recall", "large_marking_recall")

# Installed in every Python process of the run through PYTHONPATH: each open (or listing) of a path under the parts
# folder is appended, with the script that runs, to WSSS_AUDIT_LOG.
AUDIT_HOOK = """\
import os
import sys

_PARTS = os.environ["WSSS_AUDIT_PARTS"]
_LOG = os.environ["WSSS_AUDIT_LOG"]


def _audit(event, args):
    if event not in ("open", "os.listdir", "os.scandir") or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if path == _PARTS or path.startswith(_PARTS + os.sep):
        with open(_LOG, "a") as log:
            log.write(f"{sys.argv[0]}\\t{event}\\t{path}\\n")


sys.addaudithook(_audit)
"""


# Full RCA with inference CAMs, so that its aggregation is ablated. With the tiny config's settings the aggregation
# never starts in 4 epochs (a class lacks confident regions), and zeroing an aggregate that was always zero changes
# nothing: one centroid per class and a lower bank threshold let it start.
RCA = {"contrast": True, "aggregation": True, "clusters": 1, "bank_confidence": 0.3}


def config_with_rca(folder):
    """config/tiny.yaml with the `rca` experiment above."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["experiments"] = {"cam": {}, "rca": {"classifier": {"rca": RCA}},
                             **{name: value for name, value in config["experiments"].items() if name != "cam"}}
    path = folder / "tiny_rca.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def audited_rca_run(tiny_run, tmp_path_factory):
    """The tiny run copied, then rca's jobs run under the audit hook: (workdir, the script of each parts/ open,
    the jobs that ran)."""
    folder = tmp_path_factory.mktemp("mechanism")
    workdir = copy_run(tiny_run, folder / "run")
    hook = folder / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = folder / "parts_opened.tsv"
    log.touch()
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "WSSS_AUDIT_PARTS": str((workdir / "resources/tiny/parts").resolve()), "WSSS_AUDIT_LOG": str(log)}
    result = snakemake(workdir, "--configfile", str(config_with_rca(folder)), env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    jobs = result.stderr[result.stderr.index("Job stats"):].split("\n\n")[0]
    records = [line.split("\t") for line in log.read_text().splitlines()]
    return workdir, records, jobs


def job_script(argv0: str) -> str:
    """The rule script a job ran (Snakemake runs a copy named .snakemake/scripts/tmpXXXX.NAME.py), else argv[0]."""
    name = os.path.basename(argv0)
    return name.split(".", 1)[1][: -len(".py")] if "/.snakemake/scripts/" in argv0 else argv0


@pytest.mark.slow
def test_only_the_mechanism_rules_open_the_parts(audited_rca_run):
    workdir, records, jobs = audited_rca_run
    for rule in ("train_classifier", "extract_cams", "extract_val_cams", "tune_background", "make_pseudo_labels",
                 "train_segmentation", "extract_cams_without_aggregation", *MECHANISM_RULES):
        assert f"\n{rule} " in jobs, (rule, jobs)  # the steps ran, under the hook
    scripts = {job_script(argv0) for argv0, _, _ in records if "/.snakemake/scripts/" in argv0}
    assert scripts == {"evaluate_mechanism", "evaluate_cams_without_aggregation"}, records[:20]


@pytest.mark.slow
def test_the_table_has_the_mechanism_figures_and_the_ablated_row(audited_rca_run):
    workdir, _, _ = audited_rca_run
    with open(workdir / "results/benchmark.csv") as handle:
        rows = {(row["experiment"], row["stage"]): row for row in csv.DictReader(handle)}
    assert ("rca", "cam_no_aggregation") in rows
    assert not any(stage == "cam_no_aggregation" for experiment, stage in rows if experiment != "rca")  # OAA: none
    for experiment in ("cam", "rca", "rca_oaa"):
        for stage in ("cam", "pseudo_label"):
            row = rows[(experiment, stage)]
            assert row["body_recall"] != "" and row["marking_recall"] != "" and row["bg_fpr"] != "", row
    ablated, full = rows[("rca", "cam_no_aggregation")], rows[("rca", "cam")]
    assert ablated["body_recall"] != "" and "chosen on val" in ablated["detail"]
    assert all(rows[("oracle", "segmentation")][column] == "" for column in (*RECALLS, "bg_fpr"))
    results = workdir / "results/tiny/rca"
    figures = json.loads((results / "metrics/mechanism_train.json").read_text())
    seeds = figures["cam"]
    assert seeds["threshold_chosen_on"] == "val" and seeds["val_background_fpr"] <= seeds["target_background_fpr"]
    assert full["detail"].endswith(f"threshold {seeds['threshold']:.4f} found on val "
                                   f"({seeds['val_background_fpr']:.3f} there)")
    ablated_metrics = json.loads((results / "metrics/cam_no_aggregation_train.json").read_text())
    assert ablated_metrics["stage"] == "cam_no_aggregation" and ablated_metrics["threshold_chosen_on"] == "val"
    assert (results / "mechanism/cams_no_aggregation_val.h5").exists()
    assert "| rca | cam_no_aggregation |" in (workdir / "results/benchmark.md").read_text()
    epochs = ablated_metrics["aggregation_epochs"]
    assert epochs["of"] == 4 and epochs["on"] >= 1, epochs
    assert f"aggregate zeroed at inference (on in {epochs['on']} of 4 training epochs)" in ablated["detail"]
    attention = ablated_metrics["attention"]
    assert attention["ready"] and attention["split"] == "train" and attention["body"]["cells"] > 0, attention
    assert 0.0 <= attention["body"]["own_class_attention"] <= 1.0
    classes = open_layout(workdir / "resources/tiny").num_foreground
    assert attention["body"]["uniform_attention"] == pytest.approx(1 / classes)
    assert f"attention on their class's centroids {attention['body']['own_class_attention']:.3f}" in ablated["detail"]


@pytest.mark.slow
def test_the_ablated_cams_are_the_same_classifiers_with_the_aggregate_zeroed(audited_rca_run, tmp_path):
    """The ablated CAMs are extract_cams with the aggregate zeroed, from the same model file, image for image; they
    differ from the full CAMs where the image has tags."""
    from wsss.cams.extract import extract_cams
    from wsss.cams.store import read_cams
    from wsss.core.config import load_config, resolve_experiment

    workdir, _, _ = audited_rca_run
    results = workdir / "results/tiny/rca"
    settings = resolve_experiment(load_config(config_with_rca(tmp_path)), "rca")
    settings["compute"]["device"] = "cpu"
    names = (workdir / "resources/tiny/ImageSets/Segmentation/val.txt").read_text().split()[:4]
    extract_cams(results / "classifier/model.pt", workdir / "resources/tiny", "val", settings, tmp_path / "zeroed.h5",
                 ablation="aggregation")
    differ = 0
    for name in names:
        zeroed, tags = read_cams(tmp_path / "zeroed.h5", name)
        np.testing.assert_allclose(read_cams(results / "mechanism/cams_no_aggregation_val.h5", name)[0], zeroed,
                                   atol=2e-3)  # float16 maps; the job ran with another thread count
        full, _ = read_cams(results / "tuning/cams_val.h5", name)
        differ += bool(tags) and not np.allclose(full, zeroed, atol=1e-3)
    assert differ >= 1
