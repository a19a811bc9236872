"""Make the dataset root in VOC layout: generate the built-in dataset (dataset.source synthetic), or assemble
VOC 2012 + SBD or COCO 2014 from their downloaded archives (voc2012, coco2014)."""

import _repo  # noqa: F401  (makes wsss importable)

import json
import sys

from wsss.core.cli import parse_stage_args, stage_parser
from wsss.core.config import ARCHIVE_ROLES
from wsss.core.runtime import log, progress

ROLES = sorted({role for needed, optional in ARCHIVE_ROLES.values() for role in needed + optional})

parser = stage_parser(__doc__, ("dataset",), uses_torch=False)
parser.add_argument("--out", required=True, help="dataset root to create (must not exist)")
for role in ROLES:
    parser.add_argument(f"--{role.replace('_', '-')}", help=f"the downloaded archive of role {role!r}")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
dataset = settings["dataset"]
archives = {role: getattr(args, role) for role in ROLES if getattr(args, role)}
bar = lambda **options: progress(None, **options)  # noqa: E731
if dataset["source"] == "synthetic":
    from wsss.data.sources.synthetic import generate_dataset

    diagnostics = generate_dataset(args.out, dataset["synthetic"]["splits"], settings["seed"],
                                   dataset["synthetic"]["options"])
elif dataset["source"] == "voc2012":
    from wsss.data.sources import voc2012

    diagnostics = voc2012.assemble(archives, args.out, workers=args.threads, progress=bar, log=log.info)
elif dataset["source"] == "coco2014":
    from wsss.data.sources import coco2014

    diagnostics = coco2014.assemble(archives, args.out, workers=args.threads, progress=bar, log=log.info)
else:
    sys.exit(f"dataset.source is {dataset['source']!r}: that tree is read where it lies, not made here")
log.info("dataset written to %s:\n%s", args.out, json.dumps(diagnostics, indent=1)[:4000])
