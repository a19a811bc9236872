"""Resume checkpoints, kept beside the outputs and resumed only when written from the same inputs.

A training run is identified by its fingerprint: a dict of everything that shapes its result (the
settings and seed, the content hash of every input file: starting weights, dataset manifest, label
maps; the code version; the compute settings that change numbers; the number of processes). The
checkpoint stores it. A checkpoint whose fingerprint differs, or that cannot be read, is set aside
(renamed `last.pt.stale` or `last.pt.unreadable`) with a log line naming what differs, and
training starts afresh. Once a stage has written its outputs, `remove_checkpoints` deletes them:
a finished job's checkpoint never gives a head start to a later run (`--forcerun` included), while
a killed or requeued job resumes from its last matching checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .artifacts import ArtifactError, file_sha256, load_torch, remove_path, save_torch
from .runtime import log


def describe_difference(found: dict | None, expected: dict) -> str:
    """Which parts of two fingerprints differ, in words."""
    if not isinstance(found, dict):
        return "it has no fingerprint (written by an older version)"
    keys = sorted(key for key in set(found) | set(expected) if found.get(key) != expected.get(key))
    return "its " + ", ".join(keys) + (" differ" if len(keys) > 1 else " differs") + " from this run's"


def set_aside(path: Path, suffix: str, reason: str) -> None:
    target = path.with_name(path.name + suffix)
    os.replace(path, target)
    log.warning("checkpoint %s set aside as %s: %s; training starts afresh", path, target.name, reason)


def load_checkpoint(path: str | Path, expected: dict, device) -> dict | None:
    """The checkpoint at `path` when it was written with the `expected` fingerprint; None otherwise."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_torch(path, "checkpoint", map_location=device)
    except ArtifactError as error:
        set_aside(path, ".unreadable", str(error))
        return None
    comparable = json.loads(json.dumps(expected, sort_keys=True, default=str))
    if state.get("fingerprint") != comparable:
        set_aside(path, ".stale", describe_difference(state.get("fingerprint"), comparable))
        return None
    return state


def save_checkpoint(state: dict, path: str | Path, fingerprint: dict) -> None:
    save_torch({**state, "fingerprint": json.loads(json.dumps(fingerprint, sort_keys=True, default=str))}, path)


def training_state(model, optimizer, scaler) -> dict:
    """What a trainer's checkpoint holds of its training: the weights, the optimiser's state and, under fp16, the
    loss scaler's."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})}


def restore_training_state(state: dict, model, optimizer, scaler) -> None:
    """Put a checkpoint's `training_state` back into the model, optimiser and loss scaler."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "scaler" in state:
        scaler.load_state_dict(state["scaler"])


def remove_checkpoints(directory: str | Path) -> None:
    """Delete a finished run's checkpoints (and any set aside)."""
    remove_path(directory)


def weights_sha256(path: str | Path | None) -> str | None:
    """The content hash of a starting-weights file (None: random initialisation)."""
    if not path:
        return None
    if not Path(path).is_file():
        raise ArtifactError(f"weights file {path} does not exist (weights are read from disk, never downloaded "
                            f"at run time)")
    return file_sha256(path)


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights with NaN or infinite values: a model trained into them predicts nothing sensible."""
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{path}: tensor {name} holds values that are not finite (NaN or infinite): "
                                f"the training that wrote it diverged")


def load_trained_model(model_path: str | Path, device, build):
    """A final model written by a training stage: rebuilt from its saved settings, in eval mode.

    `build(settings, num_classes)` makes the network; ImageNet weights are not read again (the
    trained weights follow).
    """
    state = load_torch(model_path, "trained model", map_location=device)
    missing = [key for key in ("model", "settings", "num_classes") if key not in state]
    if missing:
        raise ArtifactError(f"trained model {model_path} lacks {', '.join(missing)}: not written by this pipeline")
    check_finite(state["model"], model_path)
    settings = dict(state["settings"])
    settings["backbone"] = {**settings["backbone"], "weights": None}
    model = build(settings, state["num_classes"]).to(device)
    model.load_state_dict(state["model"])
    return model.eval()
