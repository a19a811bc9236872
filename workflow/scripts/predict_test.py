"""Predict the test split with DeepLab-v2 (no masks needed) and pack the predictions for the evaluation server."""

import _repo  # noqa: F401  (makes wsss importable)

from pathlib import Path

from wsss.core.cli import parse_stage_args, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.figures import label_grid
from wsss.segmentation.predict import archive_predictions, predict

parser = stage_parser(__doc__, ("segmentation",), uses_torch=True)
parser.add_argument("--model", required=True, help="trained DeepLab-v2 (.pt)")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="test")
parser.add_argument("--predictions", required=True, help="output: directory of predicted label PNGs")
parser.add_argument("--archive", required=True, help="output: the predictions in the server's layout (.tar.gz)")
parser.add_argument("--figure", required=True, help="output: a few predictions beside their images (.png)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
crf = settings["segmentation"]["crf"] if settings["segmentation"]["eval_crf"] else None
layout = open_layout(args.dataset, args.manifest)
predict(args.model, layout, args.split, settings, args.predictions, crf, workers=max(1, args.threads))
names = layout.names(args.split)[:6]
label_grid(layout, {"prediction": {name: Path(args.predictions) / f"{name}.png" for name in names}}, names,
           args.figure, truth=False)
log.info("%d predictions of split %s packed in %s", archive_predictions(args.predictions, args.archive), args.split,
         args.archive)
