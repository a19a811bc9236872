"""Check a dataset's splits and record them in its manifest (every file decoded, checked and hashed)."""

import _repo  # noqa: F401  (makes wsss importable)

import json

from wsss.core.cli import base_parser, parse_args
from wsss.core.runtime import log, progress, setup_logging
from wsss.data.manifest import NEW, build_manifest, write_manifest

parser = base_parser(__doc__)
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout)")
parser.add_argument("--splits", required=True, help='the splits the run uses, as JSON: {"train": {"masks": '
                    '"SegmentationClass", "tags": true, "require_masks": true, "subset_of": null}, ...} (or a list)')
parser.add_argument("--check", default=NEW, help="the value the workflow's change check gave (stored)")
parser.add_argument("--threads", type=int, default=1, help="processes decoding and hashing the files")
parser.add_argument("--out", required=True, help="output: the manifest (.json)")
args = parse_args(parser, globals().get("snakemake"))
setup_logging()
if args.check != NEW:
    log.info("re-indexing %s: %s", args.dataset, args.check)
manifest = build_manifest(args.dataset, json.loads(args.splits), args.check, args.threads,
                          progress=lambda items, **kw: progress(items, desc="indexing", **kw))
write_manifest(manifest, args.out)
log.info("%s: %d files of splits %s indexed, content %s", args.dataset, len(manifest["files"]),
         ", ".join(f"{split} ({len(record['names'])} images)" for split, record in manifest["splits"].items()),
         manifest["content_sha256"][:16])
