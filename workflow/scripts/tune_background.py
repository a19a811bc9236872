"""Choose the CAM seeds' background threshold and (bg_power 'val') the pseudo labels' bg_power on the val split."""

import _repo  # noqa: F401  (makes wsss importable)

from wsss.core.artifacts import write_json
from wsss.core.cli import parse_stage_args, run_record, stage_parser
from wsss.core.runtime import log
from wsss.data.voc import open_layout
from wsss.evaluation.figures import plot_background_tuning
from wsss.evaluation.tuning import tune_background

parser = stage_parser(__doc__, ("cam", "pseudo_labels", "crf"), uses_torch=False)
parser.add_argument("--cams", required=True, help="CAMs of the val split (.h5)")
parser.add_argument("--dataset", required=True)
parser.add_argument("--manifest", help="the dataset's manifest (files checked against it)")
parser.add_argument("--split", default="val", help="the tuning split (its CAMs and masks)")
parser.add_argument("--out", required=True, help="output: the choices and their sweeps (.json)")
parser.add_argument("--figure", required=True, help="output: the sweeps (.png)")
args, settings = parse_stage_args(parser, globals().get("snakemake"))
tuning = tune_background(args.cams, open_layout(args.dataset, args.manifest), args.split, settings,
                         workers=max(1, args.threads))
write_json(args.out, {**tuning, "run": run_record()})
log.info("on %s (%d images): background threshold %s, bg_power %s (%s)", args.split, tuning["num_images"],
         tuning["bg_threshold"], tuning["bg_power"], tuning["bg_power_chosen_on"])
plot_background_tuning(tuning, args.figure)
