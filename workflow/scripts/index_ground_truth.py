"""Index the true masks of a split as training labels (the oracle experiment's upper bound)."""

import _repo  # noqa: F401  (makes wsss importable)

import argparse

from wsss.cli import parse_args
from wsss.data.voc import VOCLayout
from wsss.pseudo_labels import write_index

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", required=True)
parser.add_argument("--split", default="train")
parser.add_argument("--out", required=True, help="output: NAME PATH list of the masks")
args = parse_args(parser, globals().get("snakemake"))
layout = VOCLayout(args.dataset)
print(f"indexed {write_index({name: layout.label_path(name) for name in layout.names(args.split)}, args.out)} masks")
