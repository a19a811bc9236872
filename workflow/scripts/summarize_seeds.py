"""Summarise the benchmark tables of several seeds: mean, spread, and gaps to a baseline paired by seed.

    python workflow/scripts/summarize_seeds.py runs/seed0/results/benchmark.csv runs/seed1/results/benchmark.csv \
        --baseline cam --csv results/benchmark_seeds.csv --markdown results/benchmark_seeds.md

Each table is labelled by the `seedK` folder in its path (else by its position), or explicitly as
LABEL=PATH (`seed0=results/benchmark.csv`).
"""

import _repo  # noqa: F401  (makes wsss importable)

import argparse
import re
from pathlib import Path

from wsss.evaluation.seeds import read_benchmark, write_seed_summary


def seed_label(path: Path, position: int) -> str:
    match = re.search(r"(seed\d+)", str(path))
    return match.group(1) if match else f"run{position}"


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("tables", nargs="+", help="benchmark.csv of each seed, or LABEL=benchmark.csv")
parser.add_argument("--baseline", default="cam", help="experiment the gaps are measured from (default: cam)")
parser.add_argument("--csv", required=True, help="output: every seed's rows in one table (.csv)")
parser.add_argument("--markdown", required=True, help="output: the summary (.md)")
args = parser.parse_args()
tables = {}
for position, item in enumerate(args.tables):
    label, _, path = item.rpartition("=")
    path = Path(path)
    if not path.is_file():
        parser.error(f"{path}: no such benchmark table")
    label = label or seed_label(path, position)
    if label in tables:
        parser.error(f"{path}: a second table for {label}")
    tables[label] = read_benchmark(path)
write_seed_summary(tables, args.baseline, args.csv, args.markdown)
print(Path(args.markdown).read_text())
