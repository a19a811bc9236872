"""Compute multi-scale + flip CAMs of one shard of a split into an HDF5 file."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.cams.extract import ABLATIONS, extract_accumulated_cams, extract_cams
from wsss.core.cli import parse_stage_args, stage_parser
from wsss.data.voc import open_layout

parser = stage_parser(__doc__, ("cam",), uses_torch=True)
parser.add_argument("--model", help="trained classifier (.pt), for cam.protocol inference")
parser.add_argument("--accumulated", help="CAMs accumulated in training (.h5), for cam.protocol accumulated")
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout)")
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--protocol", choices=("inference", "accumulated"), help="overrides cam.protocol")
parser.add_argument("--split", default="train")
parser.add_argument("--shard", type=int, default=0)
parser.add_argument("--num-shards", type=int, default=1)
parser.add_argument("--ablation", choices=ABLATIONS, help="aggregation: with RCA's aggregate zeroed at inference")
parser.add_argument("--out", required=True, help="output: CAMs of the shard (.h5)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
layout = open_layout(args.dataset, args.manifest)
if (args.protocol or settings["cam"]["protocol"]) == "accumulated":
    if args.ablation:
        parser.error("an ablation needs inference CAMs: the accumulated maps were made in training")
    if not args.accumulated:
        parser.error("cam.protocol is 'accumulated': give --accumulated")
    extract_accumulated_cams(args.accumulated, layout, args.split, args.out, args.shard, args.num_shards)
else:
    if not args.model:
        parser.error("cam.protocol is 'inference': give --model")
    extract_cams(args.model, layout, args.split, settings, args.out, args.shard, args.num_shards, args.ablation)
