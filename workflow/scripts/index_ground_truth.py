"""Index the true masks of a split as training labels (the oracle experiment's upper bound)."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import file_sha256
from wsss.core.cli import base_parser, parse_args
from wsss.data.voc import open_layout
from wsss.pseudo_labels.store import write_index

parser = base_parser(__doc__)
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train")
parser.add_argument("--out", required=True, help="output: NAME PATH SHA256 list of the masks")
args = parse_args(parser, globals().get("snakemake"))
layout = open_layout(args.dataset, args.manifest)
masks = {name: layout.label_path(name, args.split) for name in layout.names(args.split)}
print(f"indexed {write_index({name: (path, file_sha256(path)) for name, path in masks.items()}, args.out)} masks")
