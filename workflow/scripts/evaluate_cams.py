"""Evaluate CAM seeds at the background threshold chosen on val, and over a sweep (the oracle); plot both and overlays."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import read_json, write_json
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.evaluate import evaluate_cams
from wsss.evaluation.figures import cam_overlays, plot_threshold_sweep

parser = stage_parser(__doc__, ("cam",), uses_torch=False)
parser.add_argument("--cams", required=True, help="CAM index (.h5)")
parser.add_argument("--tuning", help="the choices made on val (tune_background's .json); none: the oracle threshold")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train", help="the split scored (its CAMs and masks)")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
parser.add_argument("--sweep-figure", required=True, help="output: mIoU vs threshold (.png)")
parser.add_argument("--overlay-figure", required=True, help="output: CAM overlays (.png)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
layout = open_layout(args.dataset, args.manifest)
tuning = read_json(args.tuning) if args.tuning else {"bg_threshold": None, "split": None}
metrics = evaluate_cams(args.cams, layout, args.split, settings["cam"]["bg_thresholds"], tuning["bg_threshold"],
                        tuning["split"])
write_json(args.out, {**metrics, "run": run_record()})
log.info("CAM seed mIoU %.4f at background threshold %s (chosen on %s); oracle %.4f at %s", metrics["miou"],
         metrics["threshold"], metrics["threshold_chosen_on"], metrics["oracle_miou"], metrics["oracle_threshold"])
plot_threshold_sweep(metrics, args.sweep_figure)
cam_overlays(args.cams, layout, layout.names(args.split)[:6], args.overlay_figure, args.split)
