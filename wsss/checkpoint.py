"""Resume checkpoints: kept beside the outputs, used only when they were written from the same inputs.

A checkpoint carries a fingerprint of everything its run depends on (settings, seed, training data);
a checkpoint with another fingerprint is stale (the config or the data changed) and is ignored, so
a rerun after a change starts afresh while a rerun after a kill resumes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .runtime import log, save_torch


def fingerprint(*parts) -> str:
    """A hash of JSON-serialisable parts (bytes are hashed as they are)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def files_fingerprint(paths) -> str:
    """A hash of the contents of files, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def load_checkpoint(path: str | Path, expected_fingerprint: str, device) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("ignoring %s: written from other settings or data; training from scratch", path)
        return None
    return state


def save_checkpoint(state: dict, path: str | Path, run_fingerprint: str) -> None:
    save_torch({**state, "fingerprint": run_fingerprint}, path)


def load_trained_model(model_path: str | Path, device, build):
    """A final model written by a training stage: rebuilt from its saved settings, in eval mode.

    `build(settings, num_classes)` makes the network; ImageNet weights are not read again (the
    trained weights follow).
    """
    state = torch.load(model_path, map_location=device, weights_only=False)
    settings = dict(state["settings"])
    settings["backbone"] = {**settings["backbone"], "weights": None}
    model = build(settings, state["num_classes"]).to(device)
    model.load_state_dict(state["model"])
    return model.eval()
