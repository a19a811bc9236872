"""Measure how much of the objects' bodies and markings an experiment's CAM seeds (at the background false-positive
rate of mechanism.background_fpr, its threshold found on the val split's CAMs) and pseudo labels cover."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import write_json
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.mechanism import measure_mechanism

parser = stage_parser(__doc__, ("mechanism",), uses_torch=False)
parser.add_argument("--cams", required=True, help="CAM index of the training split (.h5)")
parser.add_argument("--val-cams", required=True, help="CAMs of the val split (.h5): the threshold is found there")
parser.add_argument("--pseudo-labels", required=True, help="pseudo-label index (index.txt)")
parser.add_argument("--dataset", required=True, help="dataset root (VOC layout, with the generator's parts/)")
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="train", help="the split scored")
parser.add_argument("--val-split", default="val", help="the split the threshold is found on")
parser.add_argument("--out", required=True, help="output: the mechanism figures (.json)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
figures = measure_mechanism(args.cams, args.val_cams, args.pseudo_labels, open_layout(args.dataset, args.manifest),
                            args.split, args.val_split, settings["mechanism"])
write_json(args.out, {**figures, "run": run_record()})
seeds, labels = figures["cam"], figures["pseudo_label"]
log.info("seeds at background FPR %.3f on %s (threshold %.4f; %.3f on %s): body recall %s, marking recall %s",
         seeds["val_background_fpr"], args.val_split, seeds["threshold"], seeds["background_fpr"], args.split,
         seeds["body_recall"], seeds["marking_recall"])
log.info("pseudo labels (background FPR %.3f): body recall %s, marking recall %s", labels["background_fpr"],
         labels["body_recall"], labels["marking_recall"])
