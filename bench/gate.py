"""The gate: does the built-in dataset give RCA something to fix? Measured from the plain CAM baseline alone.

    python bench/gate.py runs/seed10 runs/seed11 ... [--background-fpr 0.15] [--json gate.json]
    python bench/gate.py .                        (the run in this folder: results/, resources/)

Each argument is a run folder (`make seeds`' runs/seedK, or the repository after `make demo`; a results/ folder
stands for the run around it) holding results/config.yaml, experiment `cam`'s val CAMs and background tuning,
the pretrained backbone and the dataset. On the val split (`wsss/evaluation/gate.py`): the seeds' body and marking recall
(all objects, large ones) at the threshold where their background false-positive rate is --background-fpr, the
body recall of the dense-CRF pseudo labels at the bg_power the tuning chose, and a linear probe of the pretrained
backbone's body-pooled features (train objects -> val objects) beside chance. Prints a table per run and the
mean, then pass or fail of each criterion; --json writes every figure.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wsss.core.artifacts import write_json  # noqa: E402
from wsss.evaluation.gate import (BACKGROUND_FPR, GATE, PROBE_CRITERION, PROBE_MARGIN, mean_figures,  # noqa: E402
                                  measure_gate, verdicts)
from wsss.evaluation.mechanism import LARGE_OBJECT_SHARE  # noqa: E402

COLUMNS = [("seed body", "seed_body_recall"), ("seed marking", "seed_marking_recall"),
           ("seed large body", "seed_large_body_recall"), ("seed large marking", "seed_large_marking_recall"),
           ("threshold", "seed_threshold"), ("bg FPR", "seed_background_fpr"),
           ("CRF body", "crf_body_recall"), ("CRF large body", "crf_large_body_recall"),
           ("CRF bg FPR", "crf_background_fpr"), ("probe", "probe_accuracy"), ("chance", "probe_chance")]


def run_folder(path: str) -> Path:
    """The run a path names: a results/ folder stands for the run folder around it."""
    path = Path(path)
    return path.parent if path.name == "results" and (path / "config.yaml").is_file() else path


def cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: dict[str, dict]) -> str:
    lines = ["| run | " + " | ".join(name for name, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {run} | " + " | ".join(cell(figures.get(key)) for _, key in COLUMNS) + " |"
              for run, figures in rows.items()]
    return "\n".join(lines)


def verdict_table(rows: dict[str, dict]) -> str:
    criteria = list(GATE) + [PROBE_CRITERION]
    bounds = [f"{figure} {'<=' if kind == 'max' else '>='} {bound}" for figure, kind, bound in GATE.values()]
    bounds.append(f"probe_accuracy >= chance + {PROBE_MARGIN} (1 - chance)")
    answers = {run: verdicts(figures) for run, figures in rows.items()}
    lines = ["| criterion | bound | " + " | ".join(rows) + " |", "|---" * (len(rows) + 2) + "|"]
    for criterion, bound in zip(criteria, bounds):
        marks = [{True: "pass", False: "FAIL", None: "-"}[answers[run][criterion]] for run in rows]
        lines.append(f"| {criterion} | {bound} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (or their results/ folders)")
    parser.add_argument("--background-fpr", type=float, default=BACKGROUND_FPR,
                        help="the seeds' background false-positive rate on val that sets their threshold")
    parser.add_argument("--large-share", type=float, default=LARGE_OBJECT_SHARE,
                        help="an object is large above this share of the image (visible area)")
    parser.add_argument("--config", help="the resolved config to use instead of each run's results/config.yaml")
    parser.add_argument("--device", default="cpu", help="where the backbone runs for the probe")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's CPU threads (1, as the built-in config's jobs: on a busy machine more are slower)")
    parser.add_argument("--json", help="write every figure (and the verdicts) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows, seconds = {}, {}
    for path in args.runs:
        started = time.time()
        rows[path] = measure_gate(run_folder(path), args.config, args.background_fpr, args.large_share, args.device)
        seconds[path] = round(time.time() - started, 1)
        print(f"{path}: {seconds[path]} s", file=sys.stderr)
    shown = {**rows, **({"mean": mean_figures(list(rows.values()))} if len(rows) > 1 else {})}
    print(f"Val split; seeds at the threshold where their background FPR on val is {args.background_fpr}; large: "
          f"visible area > {args.large_share} of the image; CRF: pseudo labels at the tuned bg_power.\n")
    print(table(shown))
    print()
    print(verdict_table(shown))
    if args.json:
        write_json(args.json, {"settings": {"background_fpr": args.background_fpr, "large_share": args.large_share,
                                            "probe_margin": PROBE_MARGIN, "criteria": GATE},
                               "runs": rows, "seconds": seconds, "mean": shown.get("mean"),
                               "verdicts": {run: verdicts(figures) for run, figures in shown.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
