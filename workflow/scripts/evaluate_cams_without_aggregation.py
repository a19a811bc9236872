"""Score the CAMs extracted with the aggregate zeroed: seed mIoU at the threshold chosen on their own val maps, the
mechanism figures at mechanism.background_fpr (its threshold also found on their val maps), and in how many
training epochs the aggregation was on (never: the zeroed CAMs are the full ones), and where the trained
aggregation looks: the attention mass of cells on objects' bodies and markings on their own class's centroids."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import read_json, write_json
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.attention import measure_attention
from wsss.evaluation.mechanism import aggregation_epochs, evaluate_ablated_cams

parser = stage_parser(__doc__, ("cam", "mechanism"), uses_torch=True)
parser.add_argument("--cams", required=True, help="the ablated CAMs of the scored split (.h5)")
parser.add_argument("--val-cams", required=True, help="the ablated CAMs of the val split (.h5)")
parser.add_argument("--model", required=True, help="the trained classifier (model.pt): its attention is measured")
parser.add_argument("--history", required=True, help="the classifier's training history (when its aggregation was on)")
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout, with the generator's parts/)")
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train", help="the split scored")
parser.add_argument("--val-split", default="val", help="the split the thresholds are chosen on")
parser.add_argument("--out", required=True, help="output: metrics (.json)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
layout = open_layout(args.dataset, args.manifest)
metrics = evaluate_ablated_cams(args.cams, args.val_cams, layout, args.split, args.val_split, settings)
metrics["aggregation_epochs"] = aggregation_epochs(read_json(args.history))
metrics["attention"] = measure_attention(args.model, layout, args.split, settings["compute"],
                                         settings["cam"]["batch_size"])
write_json(args.out, {**metrics, "run": run_record()})
epochs, figures = metrics["aggregation_epochs"], metrics["mechanism"]
log.info("aggregate zeroed (the aggregation was on in %d of %d epochs): seed mIoU %.4f at threshold %s (chosen on "
         "%s); body recall %s, marking recall %s at background FPR %.3f", epochs["on"], epochs["of"], metrics["miou"],
         metrics["threshold"], args.val_split, figures["body_recall"], figures["marking_recall"],
         figures["background_fpr"])
attention = metrics["attention"]
if attention["ready"]:
    log.info("attention on own-class centroids (uniform attention: %.3f): body cells %.3f (top class %.3f), marking "
             "cells %.3f; background cells on the image's tags %.3f (uniform %.3f)",
             attention["body"]["uniform_attention"], attention["body"]["own_class_attention"],
             attention["body"]["own_class_top"], attention["marking"]["own_class_attention"],
             attention["background"]["tag_attention"], attention["background"]["uniform_attention"])
else:
    log.info("the aggregation never started (no centroids): no attention to measure")
