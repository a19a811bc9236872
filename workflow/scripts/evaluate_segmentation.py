"""Predict a split with DeepLab-v2 (palette PNGs), evaluate against the truth, draw a few predictions."""

import _repo  # noqa: F401  (makes wsss importable)

from pathlib import Path

from wsss.core.artifacts import write_json
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.evaluate import evaluate_label_maps
from wsss.evaluation.figures import label_grid
from wsss.segmentation.predict import predict, prediction_scales

parser = stage_parser(__doc__, ("segmentation",), uses_torch=True)
parser.add_argument("--model", required=True, help="trained DeepLab-v2 (.pt)")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="val")
parser.add_argument("--predictions", required=True, help="output: directory of predicted label PNGs")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
parser.add_argument("--figure", required=True, help="output: predictions beside the truth (.png)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
layout = open_layout(args.dataset, args.manifest)
crf = settings["segmentation"]["crf"] if settings["segmentation"]["eval_crf"] else None
paths = predict(args.model, layout, args.split, settings, args.predictions, crf, workers=max(1, args.threads))
metrics = evaluate_label_maps(paths, layout, args.split, "segmentation")
metrics["crf_post_processing"] = crf is not None
metrics["multi_scale"] = prediction_scales(settings)
weights = settings["segmentation"]["backbone"]["weights"]
metrics["starting_weights"] = Path(weights).name if weights else "random weights"
write_json(args.out, {**metrics, "run": run_record()})
log.info("segmentation mIoU on %s: %.4f", args.split, metrics["miou"])
label_grid(layout, {"prediction": paths}, layout.names(args.split)[:6], args.figure, args.split)
