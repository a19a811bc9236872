"""Generate the built-in dataset in VOC layout (dataset.source: synthetic)."""

import _repo  # noqa: F401  (makes wsss importable)

import json
import sys

from wsss.cli import parse_stage_args, stage_parser
from wsss.data.synthetic import generate_dataset
from wsss.runtime import log

parser = stage_parser(__doc__, ("dataset",))
parser.add_argument("--out", required=True, help="dataset root to create (must not exist)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
dataset = settings["dataset"]
if dataset["source"] != "synthetic":
    sys.exit(f"dataset.source is {dataset['source']!r}: only the synthetic dataset is generated here")
diagnostics = generate_dataset(args.out, dataset["synthetic"]["splits"], settings["seed"],
                               dataset["synthetic"]["options"])
log.info("dataset written to %s:\n%s", args.out, json.dumps(diagnostics, indent=1)[:4000])
