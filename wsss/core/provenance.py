"""What produced a result: the code's commit, the settings' hash, the package versions, the device and the date.

Every stage records this with its outputs (`cli.run_record`; the trainers get it as `run_record=`), and the
results table gathers it per row (`results/provenance.csv`), so a number can be traced to the code, settings
and machine that made it.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "torchvision", "numpy", "snakemake", "pydensecrf2", "h5py", "pillow", "scipy")


def git_commit(repository: str | Path = REPOSITORY) -> str:
    """The checked-out commit, with "-dirty" when tracked files differ from it; "unknown" outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repository,
                                 capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def settings_sha256(settings: dict) -> str:
    """Settings (a stage's, as the rule passes them, or a whole configuration) as a hash: equal settings, equal
    hash."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def device_name(device: str) -> str:
    """The device a stage computes on, named: "cpu", or the GPU's model ("cuda: NVIDIA H100 80GB HBM3")."""
    if not device.startswith("cuda"):
        return device
    import torch

    index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    return f"cuda: {torch.cuda.get_device_name(index)}"


def provenance(settings: dict, device: str) -> dict:
    return {"commit": git_commit(), "settings_sha256": settings_sha256(settings), "packages": package_versions(),
            "device": device_name(device), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
