"""Train the classification network on image-level tags; write the model, its history and a curve."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.classifier.train import train_classifier
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.distributed import rank
from wsss.data.voc import open_layout
from wsss.evaluation.figures import plot_curves

parser = stage_parser(__doc__, ("classifier",), uses_torch=True, distributed_script="train_classifier.py")
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout)")
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train")
parser.add_argument("--model", required=True, help="output: final model (.pt)")
parser.add_argument("--history", required=True, help="output: per-epoch history (.json)")
parser.add_argument("--curve", required=True, help="output: training curve (.png)")
parser.add_argument("--checkpoint-dir", required=True, help="resume checkpoints (kept when the job fails)")
parser.add_argument("--backbone-weights", help="the backbone's starting weights (overrides classifier.backbone.weights)")
parser.add_argument("--accumulated", help="output: CAMs accumulated in training (.h5), with classifier.accumulate_cams")
parser.add_argument("--accumulated-val", help="output: the val split's CAMs accumulated in the same passes (.h5)")
parser.add_argument("--val-split", help="the split of --accumulated-val")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
if args.backbone_weights:
    settings["classifier"]["backbone"]["weights"] = args.backbone_weights
result = train_classifier(open_layout(args.dataset, args.manifest), args.split, settings, args.model, args.history,
                          args.checkpoint_dir, args.accumulated, args.val_split, args.accumulated_val,
                          run_record=run_record())
if rank() == 0:
    plot_curves(result["history"], "epoch", ["loss", "contrast_loss", "tag_accuracy", "lr"], "classifier training",
                args.curve)
