"""Index the CAM shards in one HDF5 file (external links, no copy)."""

import argparse

from wsss.cam_store import gather_cams

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", required=True, help="output: index (.h5)")
parser.add_argument("shards", nargs="+", help="CAM shard files")
args = parser.parse_args()
print(f"indexed {gather_cams(args.shards, args.out)} images")
