"""Shared command-line plumbing of the stage scripts in workflow/scripts/.

Every stage script takes its settings either as JSON (what the Snakemake rules pass; `snakemake -n -p`
prints the exact command) or as a config file plus an experiment name (what a person types):

    python workflow/scripts/train_classifier.py --config config/config.yaml --experiment cam ...
"""

from __future__ import annotations

import argparse
import json

from .config import load_config, stage_settings
from .runtime import set_threads, setup_logging


def stage_parser(description: str, sections: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--settings", help="the stage's settings as JSON (as the workflow passes them)")
    source.add_argument("--config", help="a config YAML (validated against config/schema.yaml)")
    parser.add_argument("--experiment", default="cam", help="experiment whose overrides apply (with --config)")
    parser.add_argument("--threads", type=int, default=0, help="torch/CRF threads (0: library default)")
    parser.set_defaults(sections=sections)
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv=None) -> tuple[argparse.Namespace, dict]:
    """Parse arguments, set up logging and threads; return the args and the merged stage settings."""
    args = parser.parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    if args.settings is not None:
        settings = json.loads(args.settings)
    else:
        config = load_config(args.config)
        settings = {}
        for section in args.sections:
            settings.update(stage_settings(config, args.experiment, section))
    missing = [section for section in args.sections if section not in settings]
    if missing:
        parser.error(f"settings lack the section(s) {', '.join(missing)}")
    return args, settings


def workflow_settings(config: dict, experiment: str, *sections: str) -> str:
    """JSON settings of one experiment's stage, for a rule's params (changes trigger a rerun)."""
    settings = {}
    for section in sections:
        settings.update(stage_settings(config, experiment, section))
    return json.dumps(settings, sort_keys=True)
