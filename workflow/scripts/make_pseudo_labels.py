"""Dense-CRF pseudo labels (palette PNGs, 255 = ignore) for one shard of a split, on every core given."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import read_json
from wsss.core.cli import parse_stage_args, stage_parser
from wsss.data.voc import open_layout
from wsss.pseudo_labels.make import make_pseudo_labels, with_bg_power

parser = stage_parser(__doc__, ("pseudo_labels", "crf"), uses_torch=False)
parser.add_argument("--cams", required=True, help="CAM index (.h5)")
parser.add_argument("--tuning", help="the choices made on val (tune_background's .json), for bg_power 'val'")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train")
parser.add_argument("--shard", type=int, default=0)
parser.add_argument("--num-shards", type=int, default=1)
parser.add_argument("--out", required=True, help="output: directory of label PNGs (must not exist)")
parser.add_argument("--check", default="new", help="the rule's planning check, recorded in the shard")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
try:
    labels = with_bg_power(settings["pseudo_labels"], read_json(args.tuning) if args.tuning else None)
except ValueError as error:
    parser.error(str(error))
settings = {**settings, "pseudo_labels": labels}
make_pseudo_labels(args.cams, open_layout(args.dataset, args.manifest), args.split, settings, args.out, args.shard,
                   args.num_shards, workers=max(1, args.threads), created_with=args.check)
