"""What every stage needs at run time, torch or not: logging, where the job runs, progress bars and pools of
worker processes. Nothing here imports torch (wsss/core/compute.py holds what the torch stages add)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys

log = logging.getLogger("wsss")

# what a job's log shows of where it ran (SLURM sets these in a job step)
JOB_ENVIRONMENT = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK", "SLURM_GPUS_ON_NODE",
                   "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "WORLD_SIZE")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def job_environment() -> dict:
    """Where this job runs: host, the scheduler's variables and, in a job that has loaded torch (a torch stage),
    torch's version and the CUDA devices it sees."""
    environment = {"host": socket.gethostname()}
    torch = sys.modules.get("torch")
    if torch is not None:
        environment.update(torch=torch.__version__,
                           cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0)
    environment.update({name: os.environ[name] for name in JOB_ENVIRONMENT if name in os.environ})
    return environment


def progress(iterable, **kwargs):
    """A tqdm progress bar on stderr (it goes to the rule's log), quiet when WSSS_NO_PROGRESS is set."""
    from tqdm import tqdm

    return tqdm(iterable, disable=bool(os.environ.get("WSSS_NO_PROGRESS")), mininterval=2.0,
                file=sys.stderr, dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def forked_pool(workers: int, setup, setup_args: tuple):
    """A pool of `workers` forked processes, each prepared by setup(*setup_args); with one worker, None, and
    this process is prepared instead (it does the work itself)."""
    if workers <= 1:
        setup(*setup_args)
        yield None
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers, initializer=setup, initargs=setup_args) as pool:
        yield pool


def map_images(function, names: list[str], setup, setup_args: tuple, workers: int, desc: str, teardown=None):
    """function(name) for every name, with a progress bar: in `workers` forked processes, each prepared by
    setup(*setup_args) (results in any order), or in this process (setup, then teardown when done)."""
    with forked_pool(workers, setup, setup_args) as pool:
        if pool is not None:
            yield from progress(pool.imap_unordered(function, names, chunksize=4), total=len(names), desc=desc)
            return
        try:
            yield from (function(name) for name in progress(names, desc=desc))
        finally:
            if teardown is not None:
                teardown()
