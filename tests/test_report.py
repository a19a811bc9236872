"""`snakemake --report` of the tiny run: the results table, its provenance, the resolved config and every figure,
each with its caption; the provenance of every row filled in."""

import csv
import json
import re

import pytest
import yaml

from conftest import TINY_CONFIG, snakemake


def report_items(html: str) -> dict[str, str]:
    """{file name: caption HTML} of the results the report embeds."""
    items = re.findall(r'"filename": "([^"]+)", "labels": [^,]+, "size": "[^"]+", "caption": "((?:[^"\\]|\\.)*)"',
                       html)
    captions: dict[str, list[str]] = {}
    for name, caption in items:
        captions.setdefault(name, []).append(json.loads(f'"{caption}"'))
    return captions


@pytest.mark.slow
def test_the_report_holds_the_table_provenance_config_and_every_figure_captioned(tiny_run, tmp_path):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--report", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    captions = report_items((tmp_path / "report.html").read_text())
    assert "chosen on the val split" in captions["benchmark.csv"][0]  # where each choice came from, said plainly
    assert "commit of the code" in captions["provenance.csv"][0]
    assert "every default" in captions["config.yaml"][0]
    figures = {"classifier_curve.png": 3, "cam_threshold_sweep.png": 2, "cam_overlays.png": 2, "pseudo_labels.png": 2,
               "segmentation_curve.png": 3, "segmentation_val.png": 3, "segmentation_test.png": 3, "tuning_val.png": 2}
    for figure, count in figures.items():  # one per experiment that has the stage (the pretraining curve too)
        assert len(captions.get(figure, [])) == count, figure
        assert all(caption.strip() for caption in captions[figure])
    experiments = ("cam", "rca_oaa", "oracle")
    named = [caption for caption in captions["segmentation_val.png"]]
    assert all(any(f">{name}<" in caption for caption in named) for name in experiments)  # the wildcard rendered


@pytest.mark.slow
def test_every_row_has_its_provenance_and_the_resolved_config_has_every_default(tiny_run):
    with open(tiny_run / "results/benchmark.csv", newline="") as handle:
        table = [(row["experiment"], row["stage"], row["split"]) for row in csv.DictReader(handle)]
    with open(tiny_run / "results/provenance.csv", newline="") as handle:
        provenance = list(csv.DictReader(handle))
    assert [(row["experiment"], row["stage"], row["split"]) for row in provenance] == table
    for row in provenance:
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", row["commit"]), row  # the tests run in a git checkout
        assert re.fullmatch(r"[0-9a-f]{64}", row["settings_sha256"]) and re.fullmatch(r"[0-9a-f]{64}",
                                                                                      row["config_sha256"])
        assert row["device"] == "cpu" and row["trained_on"] == "cpu"
        assert row["date"].startswith("20") and row["torch"] and row["numpy"] and row["python"]
    resolved = yaml.safe_load((tiny_run / "results/config.yaml").read_text())
    given = yaml.safe_load(TINY_CONFIG.read_text())
    assert resolved["classifier"]["epochs"] == given["classifier"]["epochs"]
    assert resolved["crf"] and resolved["dataset"]["val_split"] == "val"  # defaults filled in
