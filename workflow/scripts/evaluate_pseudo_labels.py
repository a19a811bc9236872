"""Index the pseudo-label shards, evaluate them against the truth and draw a few next to the truth."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import read_json, write_json
from wsss.core.cli import base_parser, parse_args
from wsss.core.provenance import provenance
from wsss.core.runtime import log, setup_logging
from wsss.data.voc import open_layout
from wsss.evaluation.evaluate import evaluate_pseudo_labels
from wsss.evaluation.figures import label_grid
from wsss.pseudo_labels.store import read_label_index, write_label_index

parser = base_parser(__doc__)
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train", help="the split scored (a subset of the shards' images)")
parser.add_argument("--bg-power", default="", help="pseudo_labels.bg_power (a number, or 'val')")
parser.add_argument("--tuning", help="the choices made on val (tune_background's .json), for bg_power 'val'")
parser.add_argument("--index", required=True, help="output: NAME PATH SHA256 list of the pseudo labels")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
parser.add_argument("--figure", required=True, help="output: pseudo labels beside the truth (.png)")
parser.add_argument("--shards", nargs="+", required=True, help="pseudo-label shard directories")
args = parse_args(parser, globals().get("snakemake"))
setup_logging()
layout = open_layout(args.dataset, args.manifest)
write_label_index(args.shards, args.index)
metrics = evaluate_pseudo_labels(args.index, layout, args.split)
if args.tuning:
    tuning = read_json(args.tuning)
    metrics.update(bg_power=tuning["bg_power"], bg_power_chosen_on=tuning["bg_power_chosen_on"])
elif args.bg_power:
    metrics.update(bg_power=float(args.bg_power), bg_power_chosen_on="config")
record = {"code_version": args.code_version, "split": args.split}
write_json(args.out, {**metrics, "run": {"code_version": args.code_version, "provenance": provenance(record, "cpu")}})
log.info("pseudo-label mIoU %.4f (%.1f%% ignored)", metrics["miou"], 100 * metrics["ignored_fraction"])
label_grid(layout, {"pseudo label": read_label_index(args.index, verify=False)}, layout.names(args.split)[:6],
           args.figure, args.split)
