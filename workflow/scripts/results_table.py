"""Gather the metrics of every experiment into a CSV and a Markdown table, with each row's provenance and the
configuration the run resolved."""

import _repo  # noqa: F401  (makes wsss importable)

import json
from collections import defaultdict
from pathlib import Path

import yaml

from wsss.core.artifacts import write_text
from wsss.core.cli import base_parser, parse_args
from wsss.core.config import load_config
from wsss.core.provenance import settings_sha256
from wsss.core.rules import split_roles
from wsss.evaluation.results_table import (
    PUBLISHED,
    collect_rows,
    split_role_labels,
    provenance_rows,
    read_mechanism,
    read_metrics,
    read_timings,
    with_mechanism,
    write_benchmark,
    write_provenance,
)

parser = base_parser(__doc__)
parser.add_argument("--dataset-name", required=True)
parser.add_argument("--csv", required=True, help="output: results table (.csv)")
parser.add_argument("--markdown", required=True, help="output: results table (.md)")
parser.add_argument("--provenance", required=True, help="output: each row's provenance (.csv)")
parser.add_argument("--resolved-config", required=True, help="output: the configuration, defaults filled in (.yaml)")
parser.add_argument("--config", help="the config file (under Snakemake: the run's configuration)")
parser.add_argument("--benchmarks", nargs="*", default=[], help="EXPERIMENT=DIR of Snakemake benchmark files")
parser.add_argument("--histories", nargs="*", default=[], help="EXPERIMENT:STAGE=history.json of the trainings")
parser.add_argument("--metrics", nargs="+", required=True, help="EXPERIMENT=metrics.json")
parser.add_argument("--mechanism", nargs="*", default=[], help="EXPERIMENT=mechanism figures (.json) of its rows")
job = globals().get("snakemake")
args = parse_args(parser, job)
config = job.config if job is not None else load_config(args.config)
metrics_files, mechanism_files = defaultdict(list), defaultdict(list)
for files, items in ((metrics_files, args.metrics), (mechanism_files, args.mechanism)):
    for item in items:
        experiment, path = item.split("=", 1)
        files[experiment].append(path)
metrics = with_mechanism(read_metrics(dict(metrics_files)), read_mechanism(dict(mechanism_files)))
histories = {tuple(item.split("=", 1)[0].split(":")): item.split("=", 1)[1] for item in args.histories}
timings = {item.split("=", 1)[0]: read_timings(Path(item.split("=", 1)[1])) for item in args.benchmarks}
config_sha256 = settings_sha256(config)
write_text(args.resolved_config, f"# resolved configuration, sha256 {config_sha256} of its JSON form\n"
           + yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
write_provenance(provenance_rows(args.dataset_name, metrics, histories, config_sha256), args.provenance)
dataset = config["dataset"]  # a VOC tree read where it lies (source voc) named voc2012 is VOC 2012 too
write_benchmark(collect_rows(args.dataset_name, metrics, split_role_labels(split_roles(config))), args.csv, args.markdown, timings,
                dataset["source"] if dataset["source"] in PUBLISHED else dataset["name"])
print(Path(args.markdown).read_text())
