"""Shared command-line plumbing of the stage scripts in workflow/scripts/.

A stage script runs in two ways with one argument parser:
- from a Snakemake rule (`script:`): the rule's named inputs, outputs and params become the options
  of the same names (`--checkpoint-dir` for `checkpoint_dir`), its threads `--threads`, the config's
  loader settings `--compute`, and the script's output goes to the rule's log (the last line of an
  uncaught error's traceback also to the job's stderr, which Snakemake shows). A training rule given
  more than one GPU starts the script again under torchrun, one process per GPU;
- from the shell, with the settings as JSON or as a config file plus an experiment name:

    python workflow/scripts/train_classifier.py --config config/config.yaml --experiment cam ...

A job's log starts with where it runs (host, GPUs, the scheduler's variables). A stage that computes with
torch (`stage_parser(uses_torch=True)`) applies the compute settings (threads, deterministic mode) before any
work and logs torch's switches; the other stages never import torch (its import costs seconds per job, about
20 jobs of every run) and log that instead. `run_record()` returns both for the stage's outputs. The scripts
write it with their outputs or pass it to the package's functions as an argument (`run_record=`): the package
itself never imports this module.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .config import load_config, result_compute, section_defaults, stage_settings
from .provenance import provenance
from .runtime import job_environment, log, setup_logging

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
_RUN_RECORD: dict = {}


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--code-version", help="hash of the code the rule runs (recorded with the outputs)")
    return parser


def stage_parser(description: str, sections: tuple[str, ...], *, uses_torch: bool,
                 distributed_script: str | None = None) -> argparse.ArgumentParser:
    """A stage's parser. `uses_torch` marks a stage that computes with torch (its compute settings are applied to
    torch before its work); `distributed_script` (its file name) a training stage that can run under torchrun."""
    parser = base_parser(description)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--settings", help="the stage's settings as JSON (as the workflow passes them)")
    source.add_argument("--config", help="a config YAML (validated against config/schema.yaml)")
    parser.add_argument("--experiment", default="cam", help="experiment whose overrides apply (with --config)")
    parser.add_argument("--compute", help="compute settings as JSON, over the settings' (e.g. '{\"device\": \"cpu\"}')")
    parser.add_argument("--threads", type=int, default=1, help="cores this job may use (CRF processes)")
    parser.set_defaults(sections=sections, uses_torch=uses_torch, distributed_script=distributed_script)
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
    """Send this process's stdout and stderr (C-level too) to a log file. An uncaught exception's traceback
    goes there as well, and its last line also to the stderr the process had (`echo_uncaught_errors`)."""
    log_file = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.dup(2)
    os.dup2(log_file, 1)
    os.dup2(log_file, 2)
    os.close(log_file)
    echo_uncaught_errors(console, log_path)


def error_line(error: BaseException) -> str:
    """A traceback's last line: the exception's type and its message (which may span lines)."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def echo_uncaught_errors(console: int, log_path: str) -> None:
    """Make an uncaught exception print its traceback as before (to the log) and its last line, with the
    log's name, to the file descriptor `console`: Snakemake shows a job's stderr, not its log, so without
    this a failed job's console output says only that it failed."""
    print_traceback = sys.excepthook

    def hook(kind, error, trace):
        print_traceback(kind, error, trace)
        if not issubclass(kind, KeyboardInterrupt):
            os.write(console, f"{error_line(error)}\n(traceback in {log_path})\n".encode(errors="replace"))

    sys.excepthook = hook


def parse_args(parser: argparse.ArgumentParser, job=None, argv=None) -> argparse.Namespace:
    """Parse the shell's arguments (or `argv`), or a Snakemake job's (then output goes to the job's log).

    A training stage whose job asks for more than one GPU does not return: it runs itself under
    torchrun with the same arguments and exits with its status.
    """
    if job is None:
        return parser.parse_args(argv)
    if job.log:
        redirect_output_to(str(job.log[0]))
    print(f"job environment: {json.dumps(job_environment(), sort_keys=True)}", flush=True)
    argv = argv_from_snakemake(job)
    known = {action.dest for action in parser._actions}
    if "threads" in known:
        argv += ["--threads", str(job.threads)]
    if "compute" in known:
        argv += ["--compute", json.dumps({"loader_workers": job.config["compute"]["loader_workers"]})]
    gpus = int(job.resources.get("gpu", 0) or 0)
    script = parser.get_default("distributed_script")
    if script and gpus > 1:
        relaunch_under_torchrun(SCRIPTS / script, argv, gpus)
    return parser.parse_args(argv)


def relaunch_under_torchrun(script: Path, argv: list[str], processes: int) -> None:
    """Run `script` under torchrun on this node, one process per GPU; exit with its status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               str(script), *argv]
    print(f"running {processes} processes (one per GPU): {shlex.join(command)}", flush=True)
    sys.exit(subprocess.run(command).returncode)


def parse_stage_args(parser: argparse.ArgumentParser, job=None, argv=None) -> tuple[argparse.Namespace, dict]:
    """Parse arguments, set up logging and the compute settings; return the args and the stage settings."""
    args = parse_args(parser, job, argv)
    setup_logging()
    if args.settings is not None:
        settings = json.loads(args.settings)
    else:
        config = load_config(args.config)
        settings = {}
        for section in args.sections:
            settings.update(stage_settings(config, args.experiment, section))
    compute = {**section_defaults("compute"), **settings.get("compute", {})}
    if args.compute is not None:
        compute.update(json.loads(args.compute))
    settings["compute"] = compute
    missing = [section for section in args.sections if section not in settings]
    if missing:
        parser.error(f"settings lack the section(s) {', '.join(missing)}")
    switches, device = apply_compute(compute, parser.get_default("uses_torch"))
    _RUN_RECORD.clear()
    _RUN_RECORD.update(code_version=args.code_version, compute=result_compute(compute), switches=switches,
                       environment=job_environment(), provenance=provenance(settings, device))
    log.info("compute switches: %s", json.dumps(switches, sort_keys=True))
    return args, settings


TORCH_NOT_USED = "torch not used by this stage"


def apply_compute(compute: dict, uses_torch: bool) -> tuple[dict, str]:
    """Apply the compute settings to torch in a torch stage; return the switches as torch reports them and the
    device it computes on. A stage without torch computes on the CPU, and is told at exit if it loaded torch after
    all (then its threads and deterministic mode were never set)."""
    if not uses_torch:
        atexit.register(warn_if_torch_was_loaded)
        return {"torch": TORCH_NOT_USED}, "cpu"
    from .compute import configure_compute, select_device

    return configure_compute(compute), str(select_device(compute["device"]))


def warn_if_torch_was_loaded() -> None:
    if "torch" in sys.modules:
        log.warning("this stage was declared without torch (stage_parser(uses_torch=False)) but loaded it: its "
                    "compute settings were not applied to torch; declare it uses_torch=True")


def run_record() -> dict:
    """What produced this stage's outputs: code version, compute settings and switches, where it ran."""
    return dict(_RUN_RECORD)
