"""Gather the metrics of every experiment into a CSV and a Markdown table."""

import _repo  # noqa: F401  (makes wsss importable)

from collections import defaultdict
from pathlib import Path

from wsss.benchmark import collect_rows, read_timings, write_benchmark
from wsss.cli import base_parser, parse_args

parser = base_parser(__doc__)
parser.add_argument("--dataset-name", required=True)
parser.add_argument("--csv", required=True, help="output: results table (.csv)")
parser.add_argument("--markdown", required=True, help="output: results table (.md)")
parser.add_argument("--benchmarks", nargs="*", default=[], help="EXPERIMENT=DIR of Snakemake benchmark files")
parser.add_argument("--metrics", nargs="+", required=True, help="EXPERIMENT=metrics.json")
args = parse_args(parser, globals().get("snakemake"))
metrics = defaultdict(list)
for item in args.metrics:
    experiment, path = item.split("=", 1)
    metrics[experiment].append(path)
timings = {item.split("=", 1)[0]: read_timings(Path(item.split("=", 1)[1])) for item in args.benchmarks}
write_benchmark(collect_rows(args.dataset_name, dict(metrics)), args.csv, args.markdown, timings)
print(Path(args.markdown).read_text())
