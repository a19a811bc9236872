"""Train DeepLab-v2 on pseudo labels (or any NAME PATH SHA256 label index); write the model, history and a curve."""

import _repo  # noqa: F401  (makes wsss importable)

import os

from wsss.core.artifacts import remove_outdated
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.distributed import rank
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.figures import plot_curves
from wsss.pseudo_labels.store import read_label_index
from wsss.segmentation.train import train_segmentation

parser = stage_parser(__doc__, ("segmentation",), uses_torch=True, distributed_script="train_segmentation.py")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--labels", required=True, help="label index: NAME PATH SHA256 lines")
parser.add_argument("--backbone-weights", help="the backbone's starting weights (overrides segmentation.backbone.weights)")
parser.add_argument("--model", required=True, help="output: final model (.pt)")
parser.add_argument("--history", required=True, help="output: loss history (.json)")
parser.add_argument("--curve", required=True, help="output: training curve (.png)")
parser.add_argument("--checkpoint-dir", required=True, help="resume checkpoints (kept when the job fails)")
parser.add_argument("--outdated", nargs="*", default=[],
                    help="outputs of later jobs made from the model this one replaces (globs): removed first, so that "
                         "a failed or killed training leaves none that could pass for current")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
if os.environ.get("RANK", "0") == "0":  # once, not in each process torchrun started
    for path in remove_outdated(args.outdated):
        log.info("removed %s: made from the model this training replaces", path)
if args.backbone_weights:
    settings["segmentation"]["backbone"]["weights"] = args.backbone_weights
result = train_segmentation(open_layout(args.dataset, args.manifest), read_label_index(args.labels), settings,
                            args.model, args.history, args.checkpoint_dir, run_record())
if rank() == 0:
    plot_curves(result["history"], "iteration", ["loss", "lr"], "DeepLab-v2 training", args.curve)
