"""Compute multi-scale + flip CAMs of one shard of a split into an HDF5 file."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.cam import extract_cams
from wsss.cli import parse_stage_args, stage_parser

parser = stage_parser(__doc__, ("cam",))
parser.add_argument("--model", required=True, help="trained classifier (.pt)")
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout)")
parser.add_argument("--split", default="train")
parser.add_argument("--shard", type=int, default=0)
parser.add_argument("--num-shards", type=int, default=1)
parser.add_argument("--out", required=True, help="output: CAMs of the shard (.h5)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
extract_cams(args.model, args.dataset, args.split, settings, args.out, args.shard, args.num_shards)
