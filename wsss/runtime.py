"""What every stage needs at run time: the device, seeding, thread counts, atomic saves, logging."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from .data.voc import atomic_path

log = logging.getLogger("wsss")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def select_device(name: str = "auto") -> torch.device:
    """CUDA when asked for or, with "auto", when present; the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"compute.device is {name!r} but no CUDA device is available")
    return device


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(max(1, int(threads)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_torch(obj, path: str | Path) -> None:
    """torch.save that never leaves a half-written file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_json(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)


def load_json(path: str | Path):
    with open(path) as handle:
        return json.load(handle)


def progress(iterable, **kwargs):
    """A tqdm progress bar on stderr (it goes to the rule's log), quiet when WSSS_NO_PROGRESS is set."""
    from tqdm import tqdm

    return tqdm(iterable, disable=bool(os.environ.get("WSSS_NO_PROGRESS")), mininterval=2.0,
                file=sys.stderr, dynamic_ncols=True, **kwargs)
