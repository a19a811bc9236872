"""Shared command-line plumbing of the stage scripts in workflow/scripts/.

A stage script runs in two ways with one argument parser:
- from a Snakemake rule (`script:`): the rule's named inputs, outputs and params become the options
  of the same names (`--checkpoint-dir` for `checkpoint_dir`), its threads `--threads`, the config's
  compute section `--compute`, and the script's output goes to the rule's log;
- from the shell, with the settings as JSON or as a config file plus an experiment name:

    python workflow/scripts/train_classifier.py --config config/config.yaml --experiment cam ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .config import load_config, section_defaults, stage_settings
from .runtime import set_threads, setup_logging


def stage_parser(description: str, sections: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--settings", help="the stage's settings as JSON (as the workflow passes them)")
    source.add_argument("--config", help="a config YAML (validated against config/schema.yaml)")
    parser.add_argument("--experiment", default="cam", help="experiment whose overrides apply (with --config)")
    parser.add_argument("--compute", help="the config's compute section as JSON (overrides the settings')")
    parser.add_argument("--threads", type=int, default=0, help="torch/CRF threads (0: library default)")
    parser.set_defaults(sections=sections)
    return parser


def _as_list(value) -> list[str]:
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]


def argv_from_snakemake(job) -> list[str]:
    """The command line equivalent to a Snakemake job: named inputs, outputs and params as options."""
    argv = []
    for group in (job.input, job.output, job.params):
        for name, value in group.items():
            argv += [f"--{name.replace('_', '-')}", *_as_list(value)]
    return argv


def redirect_output_to(log_path: str) -> None:
    """Send this process's stdout and stderr (C-level too) to a log file."""
    log_file = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_file, 1)
    os.dup2(log_file, 2)
    os.close(log_file)


def parse_args(parser: argparse.ArgumentParser, job=None, argv=None) -> argparse.Namespace:
    """Parse the shell's arguments (or `argv`), or a Snakemake job's (then output goes to the job's log)."""
    if job is None:
        return parser.parse_args(argv)
    if job.log:
        redirect_output_to(str(job.log[0]))
    argv = argv_from_snakemake(job)
    known = {action.dest for action in parser._actions}
    if "threads" in known:
        argv += ["--threads", str(job.threads)]
    if "compute" in known:
        argv += ["--compute", json.dumps(job.config["compute"])]
    return parser.parse_args(argv)


def parse_stage_args(parser: argparse.ArgumentParser, job=None, argv=None) -> tuple[argparse.Namespace, dict]:
    """Parse arguments, set up logging and threads; return the args and the merged stage settings."""
    args = parse_args(parser, job, argv)
    setup_logging()
    set_threads(args.threads)
    if args.settings is not None:
        settings = json.loads(args.settings)
    else:
        config = load_config(args.config)
        settings = {}
        for section in args.sections:
            settings.update(stage_settings(config, args.experiment, section))
    if args.compute is not None:
        settings["compute"] = json.loads(args.compute)
    settings.setdefault("compute", section_defaults("compute"))
    missing = [section for section in args.sections if section not in settings]
    if missing:
        parser.error(f"settings lack the section(s) {', '.join(missing)}")
    return args, settings


def workflow_settings(config: dict, experiment: str, *sections: str) -> str:
    """JSON settings of one experiment's stage, for a rule's params (a change reruns the rule).

    The compute section (device, workers, threads) is left out: it does not change results, so the
    rules pass it separately with --compute and changing it reruns nothing.
    """
    settings = {}
    for section in sections:
        settings.update(stage_settings(config, experiment, section))
    settings.pop("compute")
    return json.dumps(settings, sort_keys=True)
