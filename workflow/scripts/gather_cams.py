"""Index the CAM shards in one HDF5 file (external links, no copy); each shard is checked first."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.cams.store import gather_cams
from wsss.core.cli import base_parser, parse_args

parser = base_parser(__doc__)
parser.add_argument("--out", required=True, help="output: index (.h5)")
parser.add_argument("--shards", nargs="+", required=True, help="CAM shard files")
args = parse_args(parser, globals().get("snakemake"))
print(f"indexed {gather_cams(args.shards, args.out)} images")
