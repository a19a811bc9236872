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
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from .artifacts import write_text
from .results_table import csv_text, markdown_table

KEY = ("dataset", "experiment", "stage", "split")
SUMMARY_COLUMNS = (*KEY, "seeds", "miou_mean", "miou_std", "miou_min", "miou_max", "per_seed")
GAP_COLUMNS = ("dataset", "experiment", "baseline", "stage", "split", "seeds", "gap_mean", "gap_std", "ci95_low",
               "ci95_high", "verdict", "ahead_in", "per_seed")
CONFIDENCE = 0.95


def read_benchmark(path: str | Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(column not in rows[0] for column in (*KEY, "miou")):
        raise ValueError(f"{path}: not a benchmark table (needs columns {', '.join((*KEY, 'miou'))})")
    return rows


def miou_by_seed(tables: dict[str, list[dict]]) -> dict[tuple, dict[str, float]]:
    """{row key: {seed label: mIoU}} over the tables of every seed."""
    values: dict[tuple, dict[str, float]] = defaultdict(dict)
    for seed, rows in tables.items():
        for row in rows:
            values[tuple(row[column] for column in KEY)][seed] = float(row["miou"])
    return values


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _per_seed(values: dict[str, float]) -> str:
    return " ".join(f"{seed}:{value:.3f}" for seed, value in values.items())


def summary_rows(tables: dict[str, list[dict]]) -> list[dict]:
    """Mean, sample standard deviation, min and max of every row's mIoU over the seeds that have it."""
    rows = []
    for key, values in miou_by_seed(tables).items():
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


def gap_rows(tables: dict[str, list[dict]], baseline: str) -> list[dict]:
    """Per experiment and stage: mIoU minus the baseline's, seed by seed (only seeds that have both)."""
    values = miou_by_seed(tables)
    rows = []
    for (dataset, experiment, stage, split), own in values.items():
        base = values.get((dataset, baseline, stage, split))
        if experiment == baseline or base is None:
            continue
        gaps = {seed: own[seed] - base[seed] for seed in own if seed in base}
        if not gaps:
            continue
        series = list(gaps.values())
        interval = paired_interval(series)
        rows.append({"dataset": dataset, "experiment": experiment, "baseline": baseline, "stage": stage,
                     "split": split, "seeds": len(series), "gap_mean": round(statistics.mean(series), 4),
                     "gap_std": round(_spread(series), 4),
                     "ci95_low": "" if interval is None else round(interval[0], 4),
                     "ci95_high": "" if interval is None else round(interval[1], 4), "verdict": verdict(interval),
                     "ahead_in": f"{sum(g > 0 for g in series)}/{len(series)}", "per_seed": _per_seed(gaps)})
    return rows


def write_seed_summary(tables: dict[str, list[dict]], baseline: str, csv_path: str | Path,
                       markdown_path: str | Path) -> None:
    summary, gaps = summary_rows(tables), gap_rows(tables, baseline)
    every_seed = [{"seed": seed, **{column: row[column] for column in (*KEY, "miou")}}
                  for seed, rows in tables.items() for row in rows]
    write_text(csv_path, csv_text(every_seed, ("seed", *KEY, "miou")))
    text = (f"# Benchmark over {len(tables)} seeds ({', '.join(tables)})\n\n"
            "mIoU: mean, sample standard deviation, range and the value of each seed.\n\n"
            + markdown_table(summary, SUMMARY_COLUMNS)
            + f"\n## Gap to `{baseline}`, paired by seed\n\n"
            "mIoU minus the baseline's in the same seed; `ci95_low`..`ci95_high`: Student's t 95 % interval of the "
            "mean gap over the seeds; `verdict`: ahead (behind) only where that interval lies above (below) zero; "
            "`ahead_in`: seeds where the gap is positive.\n\n"
            + (markdown_table(gaps, GAP_COLUMNS) if gaps else f"(no experiment shares a stage with {baseline})\n"))
    write_text(markdown_path, text)
