"""Train DeepLab-v2 on pseudo labels (or any NAME PATH label index); write the model, history and a curve."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.cli import parse_stage_args, stage_parser
from wsss.figures import plot_curves
from wsss.pseudo_labels import read_label_index
from wsss.train_segmentation import train_segmentation

parser = stage_parser(__doc__, ("segmentation",))
parser.add_argument("--dataset", required=True)
parser.add_argument("--labels", required=True, help="label index: NAME PATH lines")
parser.add_argument("--model", required=True, help="output: final model (.pt)")
parser.add_argument("--history", required=True, help="output: loss history (.json)")
parser.add_argument("--curve", required=True, help="output: training curve (.png)")
parser.add_argument("--checkpoint-dir", required=True, help="resume checkpoints (kept when the job fails)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
result = train_segmentation(args.dataset, read_label_index(args.labels), settings, args.model, args.history,
                            args.checkpoint_dir)
plot_curves(result["history"], "iteration", ["loss", "lr"], "DeepLab-v2 training", args.curve)
