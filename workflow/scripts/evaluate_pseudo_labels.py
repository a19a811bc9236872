"""Index the pseudo-label shards, evaluate them against the truth and draw a few next to the truth."""

import _repo  # noqa: F401  (makes wsss importable)

import argparse

from wsss.cli import parse_args
from wsss.data.voc import VOCLayout
from wsss.evaluate import evaluate_pseudo_labels
from wsss.figures import label_grid
from wsss.pseudo_labels import read_label_index, write_label_index
from wsss.runtime import log, save_json, setup_logging

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", required=True)
parser.add_argument("--split", default="train")
parser.add_argument("--index", required=True, help="output: NAME PATH list of the pseudo labels")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
parser.add_argument("--figure", required=True, help="output: pseudo labels beside the truth (.png)")
parser.add_argument("--shards", nargs="+", required=True, help="pseudo-label shard directories")
args = parse_args(parser, globals().get("snakemake"))
setup_logging()
write_label_index(args.shards, args.index)
metrics = evaluate_pseudo_labels(args.index, args.dataset, args.split)
save_json(metrics, args.out)
log.info("pseudo-label mIoU %.4f (%.1f%% ignored)", metrics["miou"], 100 * metrics["ignored_fraction"])
names = VOCLayout(args.dataset).names(args.split)[:6]
label_grid(args.dataset, {"pseudo label": read_label_index(args.index)}, names, args.figure)
