import csv
import subprocess
import sys

import pytest

from conftest import REPO
from wsss.evaluation.seeds import gap_rows, paired_interval, read_benchmark, summary_rows, verdict


def write_table(path, mious):
    """A benchmark.csv with one segmentation row per experiment."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dataset", "experiment", "stage", "split", "miou"])
        writer.writeheader()
        for experiment, miou in mious.items():
            writer.writerow({"dataset": "builtin", "experiment": experiment, "stage": "segmentation",
                             "split": "val", "miou": miou})
    return path


def test_summary_and_gaps_are_paired_by_seed(tmp_path):
    tables = {"seed0": read_benchmark(write_table(tmp_path / "a.csv", {"cam": 0.5, "rca": 0.6})),
              "seed1": read_benchmark(write_table(tmp_path / "b.csv", {"cam": 0.3, "rca": 0.35})),
              "seed2": read_benchmark(write_table(tmp_path / "c.csv", {"cam": 0.4}))}
    summary = {row["experiment"]: row for row in summary_rows(tables)}
    assert summary["cam"]["seeds"] == 3 and summary["cam"]["miou_mean"] == pytest.approx(0.4)
    assert summary["cam"]["miou_std"] == pytest.approx(0.1)
    assert summary["rca"]["seeds"] == 2 and summary["rca"]["miou_min"] == 0.35
    (gap,) = gap_rows(tables, "cam")
    # rca's mean (0.475) is above cam's (0.4) partly because rca lacks seed2: the paired gap uses seeds 0-1 only
    assert gap["seeds"] == 2 and gap["gap_mean"] == pytest.approx(0.075) and gap["ahead_in"] == "2/2"


def test_the_script_labels_tables_and_rejects_a_missing_one(tmp_path):
    (tmp_path / "seed4").mkdir()
    first = write_table(tmp_path / "seed4" / "benchmark.csv", {"cam": 0.5, "rca": 0.4})
    second = write_table(tmp_path / "other.csv", {"cam": 0.5, "rca": 0.55})
    script = [sys.executable, str(REPO / "workflow/scripts/summarize_seeds.py")]
    out = [("--csv", tmp_path / "s.csv"), ("--markdown", tmp_path / "s.md")]
    flags = [str(item) for pair in out for item in pair]
    subprocess.run([*script, str(first), f"seed9={second}", *flags], check=True, capture_output=True)
    text = (tmp_path / "s.md").read_text()
    assert "seed4:-0.100 seed9:0.050" in text and "1/2" in text
    missing = subprocess.run([*script, str(tmp_path / "nope.csv"), *flags], capture_output=True, text=True)
    assert missing.returncode != 0 and "nope.csv: no such benchmark table" in missing.stderr


def test_the_paired_interval_is_students_t_and_decides_the_verdict():
    gaps = [0.065, 0.056, 0.004]  # rca - cam on val, seeds 0-2 of the 3-seed CPU table
    low, high = paired_interval(gaps)
    mean, sd = 0.041666667, 0.032929217  # by hand; t(0.975, 2) = 4.302653
    assert (low, high) == pytest.approx((mean - 4.302653 * sd / 3 ** 0.5, mean + 4.302653 * sd / 3 ** 0.5), abs=1e-6)
    assert verdict((low, high)) == "within noise"  # 3 of 3 seeds positive, yet the interval holds zero
    assert verdict(paired_interval([0.03, 0.02, 0.025, 0.028, 0.022])) == "ahead"
    assert verdict(paired_interval([-0.03, -0.02, -0.025])) == "behind"
    assert paired_interval([0.1]) is None and verdict(None).startswith("one seed")
    assert paired_interval([0.02, 0.02]) == (0.02, 0.02)  # no spread: the interval is the point


def write_mechanism_table(path, rows):
    """A benchmark.csv with mIoU and body recall: rows of (experiment, stage, miou, body_recall)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["dataset", "experiment", "stage", "split", "miou", "body_recall",
                                                    "marking_recall"])
        writer.writeheader()
        for experiment, stage, miou, body in rows:
            writer.writerow({"dataset": "builtin", "experiment": experiment, "stage": stage, "split": "train",
                             "miou": miou, "body_recall": body, "marking_recall": "" if body == "" else 0.9})
    return path


def test_the_mechanism_figures_are_summarised_and_paired_like_the_miou(tmp_path):
    from wsss.evaluation.seeds import ablation_rows, mechanism_summary_rows, write_seed_summary

    seeds = {"seed0": [("cam", "cam", 0.5, 0.30), ("rca", "cam", 0.52, 0.40), ("rca", "cam_no_aggregation", 0.49, 0.25),
                       ("oracle", "segmentation", 0.7, "")],
             "seed1": [("cam", "cam", 0.4, 0.20), ("rca", "cam", 0.45, 0.36), ("rca", "cam_no_aggregation", 0.41, 0.24),
                       ("oracle", "segmentation", 0.6, "")]}
    tables = {seed: read_benchmark(write_mechanism_table(tmp_path / f"{seed}.csv", rows)) for seed, rows in seeds.items()}
    summary = {(row["experiment"], row["stage"]): row for row in mechanism_summary_rows(tables)}
    assert ("oracle", "segmentation") not in summary  # empty cells: no figure
    assert summary[("rca", "cam")]["body_recall_mean"] == pytest.approx(0.38)
    assert summary[("rca", "cam")]["body_recall_std"] == pytest.approx(0.0283, abs=1e-4)
    assert summary[("rca", "cam")]["large_body_recall_mean"] == ""  # a column these tables lack
    (gap,) = [row for row in gap_rows(tables, "cam", "body_recall") if row["stage"] == "cam"]
    assert (gap["experiment"], gap["metric"], gap["gap_mean"], gap["ahead_in"]) == ("rca", "body_recall", 0.13, "2/2")
    ablation = {row["metric"]: row for row in ablation_rows(tables, "miou") + ablation_rows(tables, "body_recall")}
    assert ablation["miou"]["experiment"] == "rca" and ablation["miou"]["gap_mean"] == pytest.approx(0.035)
    assert ablation["body_recall"]["per_seed"] == "seed0:0.150 seed1:0.120"
    write_seed_summary(tables, "cam", tmp_path / "s.csv", tmp_path / "s.md")
    text = (tmp_path / "s.md").read_text()
    assert "## Mechanism figures" in text and "### The aggregation's effect, paired by seed" in text
    assert "| builtin | rca | its cam_no_aggregation | cam | train | body_recall | 2 | 0.135 |" in text
    with open(tmp_path / "s.csv", newline="") as handle:
        assert next(csv.DictReader(handle))["body_recall"] == "0.3"


def test_tables_without_mechanism_figures_summarise_as_before(tmp_path):
    tables = {"seed0": read_benchmark(write_table(tmp_path / "a.csv", {"cam": 0.5, "rca": 0.6}))}
    from wsss.evaluation.seeds import write_seed_summary

    write_seed_summary(tables, "cam", tmp_path / "s.csv", tmp_path / "s.md")
    assert "Mechanism" not in (tmp_path / "s.md").read_text()
