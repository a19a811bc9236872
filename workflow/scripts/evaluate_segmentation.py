"""Predict a split with DeepLab-v2 (palette PNGs), evaluate against the truth, draw a few predictions."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.cli import parse_stage_args, stage_parser
from wsss.data.voc import VOCLayout
from wsss.evaluate import evaluate_label_maps
from wsss.figures import label_grid
from wsss.runtime import log, save_json
from wsss.train_segmentation import predict

parser = stage_parser(__doc__, ("segmentation", "crf"))
parser.add_argument("--model", required=True, help="trained DeepLab-v2 (.pt)")
parser.add_argument("--dataset", required=True)
parser.add_argument("--split", default="val")
parser.add_argument("--predictions", required=True, help="output: directory of predicted label PNGs")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
parser.add_argument("--figure", required=True, help="output: predictions beside the truth (.png)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
crf = settings["crf"] if settings["segmentation"]["eval_crf"] else None
paths = predict(args.model, args.dataset, args.split, settings, args.predictions, crf)
metrics = evaluate_label_maps(paths, args.dataset, args.split, "segmentation")
metrics["crf_post_processing"] = crf is not None
save_json(metrics, args.out)
log.info("segmentation mIoU on %s: %.4f", args.split, metrics["miou"])
label_grid(args.dataset, {"prediction": paths}, VOCLayout(args.dataset).names(args.split)[:6], args.figure)
