"""Fetch one entry of the config's `downloads` (resuming a partial file), checked against its sha256 and size."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.cli import base_parser, parse_args
from wsss.core.runtime import log, progress, setup_logging
from wsss.data.sources.download import fetch, file_digest

parser = base_parser(__doc__)
parser.add_argument("--name", required=True, help="the entry of `downloads`")
parser.add_argument("--url", help="http(s):// or file:// (under Snakemake: the config's, not a param)")
parser.add_argument("--sha256", help="the whole sha256, or its first hex digits where only that is published")
parser.add_argument("--size", type=int, help="bytes, when known")
parser.add_argument("--out", required=True, help="output: the file")
job = globals().get("snakemake")
args = parse_args(parser, job)
setup_logging()
url = job.config["downloads"][args.name]["url"] if job is not None else args.url
received = fetch(args.name, url, args.out, args.sha256, args.size or None,
                 progress=lambda **options: progress(None, **options))
log.info("%s: %d bytes received, sha256 %s", args.out, received, file_digest(args.out))
