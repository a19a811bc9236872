import csv
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("WSSS_NO_PROGRESS", "1")


def pytest_configure(config):
    """The tests run in the pipeline's deterministic mode, as every stage does."""
    import torch

    from wsss.core.compute import configure_compute

    configure_compute({"threads": torch.get_num_threads(), "deterministic": True})


# the modules that start SLURM's daemons (fixed ports, one cluster per host): never at once in two workers
SLURM_MODULES = ("test_cluster", "test_slurm_cluster")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite in two pytest-xdist workers (`-n 2 --dist loadgroup`): while one waits (on SLURM's
    status checks, a killed run, a test server) the other computes. A group runs in one worker, in order: each
    module's tests (its fixtures are built once), the SLURM modules together. Session fixtures, the tiny run
    among them, are built once per worker that needs them, so a test that changes the tiny run in place changes
    only its own worker's."""
    for item in items:
        module = item.module.__name__
        item.add_marker(pytest.mark.xdist_group("slurm" if module in SLURM_MODULES else module))


REPO = Path(__file__).resolve().parent.parent
TINY_OPTIONS = {"image_size": 64}
TINY_CONFIG = REPO / "config" / "tiny.yaml"


@functools.cache
def no_slurm_controller() -> str:
    """A folder holding an `scontrol` that fails at once. Snakemake loads the slurm executor plugin at every
    start, and the plugin runs `scontrol show config`; where SLURM is installed but no controller answers (CI,
    once the SLURM test has stopped its daemons) that call waits about 9 s. Local runs need no SLURM."""
    folder = Path(tempfile.mkdtemp(prefix="no-slurm-"))
    (folder / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (folder / "scontrol").chmod(0o755)
    return str(folder)


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 1200,
              snakefile: Path = REPO / "workflow" / "Snakefile") -> subprocess.CompletedProcess:
    """Run the workflow (or another Snakefile) in `workdir` on 2 cores (a subprocess, as a user would), locally (no
    SLURM)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
               str(workdir), "--cores", "2", *args]
    path = f"{no_slurm_controller()}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir,
                          env={**os.environ, "PATH": path, **(env or {})})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A whole run of config/tiny.yaml (about 2 minutes): the reference the slow tests compare with."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    result = snakemake(workdir, "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def table_rows(run: Path) -> list[dict]:
    """The rows of a run's results/benchmark.csv."""
    with open(run / "results/benchmark.csv") as handle:
        return list(csv.DictReader(handle))


def copy_run(run: Path, destination: Path) -> Path:
    """A copy of a finished run (outputs, Snakemake's metadata, times kept) to change without touching it."""
    return shutil.copytree(run, destination, symlinks=True)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small built-in dataset (VOC layout) shared by the tests that only read it."""
    from wsss.data.sources.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("data") / "tiny"
    generate_dataset(root, {"train": 24, "val": 8}, seed=3, options=TINY_OPTIONS)
    return root


def tiny_settings(**overrides) -> dict:
    """A validated, resolved configuration for the tiny dataset, with small networks."""
    from wsss.core.config import deep_merge, resolve_experiment, validate_config

    config = {
        "seed": 1,
        "dataset": {"name": "tiny", "source": "synthetic", "root": "unused"},
        "compute": {"device": "cpu", "loader_workers": 0, "threads": 1},
        "experiments": {"cam": {}},
        "classifier": {"backbone": {"width": 0.125, "batch_norm": True}, "input_size": 64, "epochs": 2,
                       "batch_size": 8, "lr": 0.01, "lr_milestones": [1]},
        "cam": {"scales": [1.0, 0.5], "batch_size": 4, "shards": 2},
        "pseudo_labels": {"shards": 2},
        "segmentation": {"backbone": {"name": "resnet", "layers": [1, 1, 1, 1], "width_per_group": 8},
                         "aspp_rates": [1, 2], "crop_size": 48, "freeze_batchnorm": False, "batch_size": 4, "iterations": 6, "lr": 0.01,
                         "checkpoint_every": 3},
    }
    config = validate_config(deep_merge(config, overrides))
    return {**resolve_experiment(config, "cam"), "experiment": "cam"}


class Killed(Exception):
    pass


def kill_after_first_checkpoint(monkeypatch):
    """Make the first checkpoint save raise right after writing, as a kill -9 would stop the run."""
    import wsss.core.checkpoint as module

    real_save = module.save_torch

    def save_then_die(obj, path):
        real_save(obj, path)
        if "last.pt" in str(path):
            raise Killed(path)

    monkeypatch.setattr(module, "save_torch", save_then_die)
