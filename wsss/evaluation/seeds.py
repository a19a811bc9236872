"""Several seeds of one configuration summarised: mean and spread of every row, and paired gaps.

Each seed is a whole run of the workflow in its own folder (`snakemake --directory runs/seedK
--config seed=K`): another dataset draw, initialisation, data order and augmentation. Because the
experiments of one run share their random draws, the gap between two rows of the same seed is a
paired measurement; its mean and spread over seeds say whether a method is ahead, which one seed's
table cannot.

The 95 % interval of a mean paired gap is Student's t interval over the seeds: mean +/- t(0.975, n-1)
* sd / sqrt(n), with sd the sample standard deviation of the per-seed gaps. It assumes the gaps of
independent seeds scatter normally around the true gap; with few seeds it is wide, as it should be.
A method is called "ahead" only where the whole interval lies above zero ("behind": below zero);
otherwise the gap is "within noise". One seed gives no interval.

The built-in dataset's tables also hold the mechanism figures (body and marking recall, over all and large
objects): they are summarised and paired the same way, and so is the aggregation's own effect within an
experiment, its `cam` row minus its `cam_no_aggregation` row (the CAMs with the aggregate zeroed).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from ..core.artifacts import write_text
from .results_table import csv_text, markdown_table

KEY = ("dataset", "experiment", "stage", "split")
MECHANISM_METRICS = ("body_recall", "marking_recall", "large_body_recall", "large_marking_recall")
SUMMARY_COLUMNS = (*KEY, "seeds", "miou_mean", "miou_std", "miou_min", "miou_max", "per_seed")
MECHANISM_SUMMARY_COLUMNS = (*KEY, "seeds", *[f"{metric}_{statistic}" for metric in MECHANISM_METRICS
                                              for statistic in ("mean", "std")])
GAP_COLUMNS = ("dataset", "experiment", "baseline", "stage", "split", "metric", "seeds", "gap_mean", "gap_std",
               "ci95_low", "ci95_high", "verdict", "ahead_in", "per_seed")
CONFIDENCE = 0.95
FULL_CAMS, ABLATED_CAMS = "cam", "cam_no_aggregation"  # one classifier's CAMs, with and without the aggregate


def read_benchmark(path: str | Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(column not in rows[0] for column in (*KEY, "miou")):
        raise ValueError(f"{path}: not a benchmark table (needs columns {', '.join((*KEY, 'miou'))})")
    return rows


def values_by_seed(tables: dict[str, list[dict]], metric: str = "miou") -> dict[tuple, dict[str, float]]:
    """{row key: {seed label: the row's `metric`}} over the tables of every seed; a row without the metric (an
    empty cell, or a table written before the column existed) is left out."""
    values: dict[tuple, dict[str, float]] = defaultdict(dict)
    for seed, rows in tables.items():
        for row in rows:
            if row.get(metric, "") != "":
                values[tuple(row[column] for column in KEY)][seed] = float(row[metric])
    return values


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _per_seed(values: dict[str, float]) -> str:
    return " ".join(f"{seed}:{value:.3f}" for seed, value in values.items())


def summary_rows(tables: dict[str, list[dict]]) -> list[dict]:
    """Mean, sample standard deviation, min and max of every row's mIoU over the seeds that have it."""
    rows = []
    for key, values in values_by_seed(tables).items():
        series = list(values.values())
        rows.append({**dict(zip(KEY, key)), "seeds": len(series), "miou_mean": round(statistics.mean(series), 4),
                     "miou_std": round(_spread(series), 4), "miou_min": round(min(series), 4),
                     "miou_max": round(max(series), 4), "per_seed": _per_seed(values)})
    return rows


def paired_interval(gaps: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student's t interval of the mean of paired gaps (None for fewer than two)."""
    if len(gaps) < 2:
        return None
    from scipy.stats import t

    mean, half = statistics.mean(gaps), 0.0
    spread = statistics.stdev(gaps)
    if spread > 0:
        half = t.ppf(0.5 + confidence / 2, len(gaps) - 1) * spread / math.sqrt(len(gaps))
    return mean - half, mean + half


def verdict(interval: tuple[float, float] | None) -> str:
    """"ahead" / "behind" only where the interval excludes zero."""
    if interval is None:
        return "one seed: no interval"
    low, high = interval
    return "ahead" if low > 0 else "behind" if high < 0 else "within noise"


def mechanism_summary_rows(tables: dict[str, list[dict]]) -> list[dict]:
    """Mean and sample standard deviation of every mechanism figure of the rows that have one, over the seeds."""
    by_metric = {metric: values_by_seed(tables, metric) for metric in MECHANISM_METRICS}
    keys = list(dict.fromkeys(key for values in by_metric.values() for key in values))
    rows = []
    for key in keys:
        row = {**dict(zip(KEY, key)), "seeds": max(len(values.get(key, {})) for values in by_metric.values())}
        for metric, values in by_metric.items():
            series = list(values.get(key, {}).values())
            row[f"{metric}_mean"] = round(statistics.mean(series), 4) if series else ""
            row[f"{metric}_std"] = round(_spread(series), 4) if series else ""
        rows.append(row)
    return rows


def paired_gap(own: dict[str, float], base: dict[str, float]) -> dict | None:
    """The statistics of `own` minus `base` over the seeds that have both (None where none has)."""
    gaps = {seed: own[seed] - base[seed] for seed in own if seed in base}
    if not gaps:
        return None
    series = list(gaps.values())
    interval = paired_interval(series)
    return {"seeds": len(series), "gap_mean": round(statistics.mean(series), 4), "gap_std": round(_spread(series), 4),
            "ci95_low": "" if interval is None else round(interval[0], 4),
            "ci95_high": "" if interval is None else round(interval[1], 4), "verdict": verdict(interval),
            "ahead_in": f"{sum(g > 0 for g in series)}/{len(series)}", "per_seed": _per_seed(gaps)}


def gap_rows(tables: dict[str, list[dict]], baseline: str, metric: str = "miou") -> list[dict]:
    """Per experiment and stage: `metric` minus the baseline's, seed by seed (only seeds that have both)."""
    values = values_by_seed(tables, metric)
    rows = []
    for (dataset, experiment, stage, split), own in values.items():
        base = values.get((dataset, baseline, stage, split))
        gap = None if experiment == baseline or base is None else paired_gap(own, base)
        if gap is not None:
            rows.append({"dataset": dataset, "experiment": experiment, "baseline": baseline, "stage": stage,
                         "split": split, "metric": metric, **gap})
    return rows


def ablation_rows(tables: dict[str, list[dict]], metric: str = "miou") -> list[dict]:
    """Per experiment with CAMs also extracted with the aggregate zeroed: `metric` of its full CAMs minus that of
    the ablated ones, seed by seed (the aggregation's effect on the same trained classifier)."""
    values = values_by_seed(tables, metric)
    rows = []
    for (dataset, experiment, stage, split), ablated in values.items():
        full = values.get((dataset, experiment, FULL_CAMS, split))
        gap = None if stage != ABLATED_CAMS or full is None else paired_gap(full, ablated)
        if gap is not None:
            rows.append({"dataset": dataset, "experiment": experiment, "baseline": f"its {ABLATED_CAMS}",
                         "stage": FULL_CAMS, "split": split, "metric": metric, **gap})
    return rows


def write_seed_summary(tables: dict[str, list[dict]], baseline: str, csv_path: str | Path,
                       markdown_path: str | Path) -> None:
    summary, gaps = summary_rows(tables), gap_rows(tables, baseline)
    columns = (*KEY, "miou", *MECHANISM_METRICS)
    every_seed = [{"seed": seed, **{column: row.get(column, "") for column in columns}}
                  for seed, rows in tables.items() for row in rows]
    write_text(csv_path, csv_text(every_seed, ("seed", *columns)))
    text = (f"# Benchmark over {len(tables)} seeds ({', '.join(tables)})\n\n"
            "mIoU: mean, sample standard deviation, range and the value of each seed.\n\n"
            + markdown_table(summary, SUMMARY_COLUMNS)
            + f"\n## Gap to `{baseline}`, paired by seed\n\n"
            "mIoU minus the baseline's in the same seed; `ci95_low`..`ci95_high`: Student's t 95 % interval of the "
            "mean gap over the seeds; `verdict`: ahead (behind) only where that interval lies above (below) zero; "
            "`ahead_in`: seeds where the gap is positive.\n\n"
            + (markdown_table(gaps, GAP_COLUMNS) if gaps else f"(no experiment shares a stage with {baseline})\n")
            + mechanism_summary(tables, baseline))
    write_text(markdown_path, text)


def mechanism_summary(tables: dict[str, list[dict]], baseline: str) -> str:
    """The Markdown sections of the mechanism figures (none where the tables hold none): their mean and spread,
    their gaps to the baseline, and the aggregation's effect (full CAMs minus the ablated ones), mIoU included."""
    summary = mechanism_summary_rows(tables)
    if not summary:
        return ""
    gaps = [row for metric in MECHANISM_METRICS for row in gap_rows(tables, baseline, metric)]
    ablation = [row for metric in ("miou", *MECHANISM_METRICS) for row in ablation_rows(tables, metric)]
    text = ("\n## Mechanism figures\n\n"
            "Body and marking recall (over all objects and large ones; the seeds' at the configured background "
            "false-positive rate): mean and sample standard deviation over the seeds.\n\n"
            + markdown_table(summary, MECHANISM_SUMMARY_COLUMNS))
    if gaps:
        text += f"\n### Gap to `{baseline}`, paired by seed\n\n" + markdown_table(gaps, GAP_COLUMNS)
    if ablation:
        text += ("\n### The aggregation's effect, paired by seed\n\n"
                 f"Each experiment's `{FULL_CAMS}` row minus its `{ABLATED_CAMS}` row: the same classifier's CAMs "
                 "with and without the aggregate.\n\n" + markdown_table(ablation, GAP_COLUMNS))
    return text
