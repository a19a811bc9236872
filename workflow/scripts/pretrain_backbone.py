"""Pretrain the classifier's backbone on the tags of a separately generated set (pretrain.images > 0)."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.classifier.pretrain import pretrain_backbone
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.distributed import rank
from wsss.data.voc import open_layout
from wsss.evaluation.figures import plot_curves

parser = stage_parser(__doc__, ("classifier",), uses_torch=True, distributed_script="pretrain_backbone.py")
parser.add_argument("--dataset", required=True, help="the pretraining set's root (VOC layout)")
parser.add_argument("--manifest", help="the pretraining set's manifest (files checked against it)")
parser.add_argument("--backbone", required=True, help="output: the backbone's weights (.pt)")
parser.add_argument("--model", required=True, help="output: the whole pretrained classifier (.pt)")
parser.add_argument("--history", required=True, help="output: per-epoch history (.json)")
parser.add_argument("--curve", required=True, help="output: training curve (.png)")
parser.add_argument("--checkpoint-dir", required=True, help="resume checkpoints (kept when the job fails)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
result = pretrain_backbone(open_layout(args.dataset, args.manifest), settings, args.backbone, args.model,
                           args.history, args.checkpoint_dir, run_record())
if rank() == 0:
    plot_curves(result["history"], "epoch", ["loss", "tag_accuracy", "lr"], "backbone pretraining", args.curve)
