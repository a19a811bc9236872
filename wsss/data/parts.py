"""Masks of every object's body and marking, for measuring what CAMs and pseudo labels cover.

The built-in generator writes one PNG per image into `parts/` beside the VOC layout: 0 where no object is
visible, 2k - 1 on the visible body of object k and 2k on its visible marking (k = 1, 2, ...). With the class
mask (`SegmentationClass/`), this says which class's body or marking each pixel is. Only the mechanism
measurements read it: no training or tuning step opens this folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PARTS_FOLDER = "parts"
MAX_OBJECTS = 127  # 2 * 127 fits a uint8


def encode_parts(instances: np.ndarray, marking: np.ndarray) -> np.ndarray:
    """(H, W) uint8 parts map from the visible object index (0 none, 1..K) and where the markings are."""
    instances = np.asarray(instances)
    if instances.max(initial=0) > MAX_OBJECTS:
        raise ValueError(f"at most {MAX_OBJECTS} objects per image, got {instances.max()}")
    marking = np.asarray(marking, bool) & (instances > 0)
    return np.where(instances > 0, 2 * instances - 1 + marking, 0).astype(np.uint8)


def decode_parts(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(instances (H, W) int32, 0 none; marking (H, W) bool) of a parts map."""
    parts = np.asarray(parts).astype(np.int32)
    return (parts + 1) // 2, (parts > 0) & (parts % 2 == 0)


def parts_path(root: str | Path, name: str) -> Path:
    return Path(root) / PARTS_FOLDER / f"{name}.png"


def write_parts(path: str | Path, instances: np.ndarray, marking: np.ndarray) -> None:
    Image.fromarray(encode_parts(instances, marking), mode="L").save(path, format="PNG")


def read_parts(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(instances, marking) of one image's parts PNG."""
    with Image.open(path) as image:
        return decode_parts(np.asarray(image))
