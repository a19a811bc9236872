"""PASCAL VOC layout: the one on-disk format every dataset here is read from.

A dataset root holds
    JPEGImages/NAME.jpg                 RGB images
    SegmentationClass/NAME.png          palette PNG, 0 = background, 1..C = classes, 255 = ignore
    ImageSets/Segmentation/SPLIT.txt    one image name a line
    ImageSets/Segmentation/SPLIT_cls.txt  "NAME c1 c2 ..." with 0-based foreground classes (RCA's format)
    saliency/NAME.png                   optional grey-level saliency maps (0..255)
    classes.txt                         optional class names, background first (VOC's names otherwise)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE_INDEX = 255

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The standard VOC colour map: (num_colors, 3) uint8, index 255 included."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for index in range(num_colors):
        r = g = b = 0
        code = index
        for bit in range(8):
            r |= ((code >> 0) & 1) << (7 - bit)
            g |= ((code >> 1) & 1) << (7 - bit)
            b |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette[index] = (r, g, b)
    return palette


_PALETTE_BYTES = voc_palette().reshape(-1).tolist()


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary sibling of `path` to write to before `os.replace` makes it appear whole."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_label_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a (H, W) uint8 label map as a VOC palette PNG, atomically."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be 2-D, got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise ValueError(f"{path}: label values must lie in 0..255")
        label = label.astype(np.uint8)
    image = Image.fromarray(label, mode="P")
    image.putpalette(_PALETTE_BYTES)
    tmp = atomic_path(path)
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a palette (or grey) PNG label map as (H, W) uint8 indices."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grey PNG label map, got mode {image.mode}")
        return np.array(image, dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)


def read_grey(path: str | os.PathLike) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("L"), dtype=np.uint8)


def read_name_list(path: str | os.PathLike) -> list[str]:
    with open(path) as handle:
        return [line.split()[0] for line in handle if line.strip()]


def read_class_list(path: str | os.PathLike, num_classes: int | None = None) -> dict[str, list[int]]:
    """Read "NAME c1 c2 ..." lines (0-based foreground classes) into {name: [classes]}."""
    tags: dict[str, list[int]] = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                classes = sorted({int(field) for field in fields[1:]})
            except ValueError:
                raise ValueError(f"{path}:{line_number}: class indices must be integers: {line.strip()!r}")
            if num_classes is not None and any(c < 0 or c >= num_classes for c in classes):
                raise ValueError(f"{path}:{line_number}: class index outside 0..{num_classes - 1}: {line.strip()!r}")
            tags[fields[0]] = classes
    return tags


def write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    tmp = atomic_path(path)
    with open(tmp, "w") as handle:
        handle.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_class_list(path: str | os.PathLike, tags: dict[str, list[int]]) -> None:
    write_lines(path, [" ".join([name, *map(str, classes)]) for name, classes in tags.items()])


def shard_names(names: list[str], shard: int, num_shards: int) -> list[str]:
    """The images of one shard: every num_shards-th name, so shards get similar mixes of images."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} outside 0..{num_shards - 1}")
    return names[shard::num_shards]


def tags_from_label(label: np.ndarray, num_foreground: int) -> list[int]:
    """The 0-based foreground classes present in a label map (background and ignore excluded)."""
    values = np.unique(label)
    return [int(v) - 1 for v in values if 1 <= v <= num_foreground]


@dataclass(frozen=True)
class VOCLayout:
    """Paths and lists of one dataset root in VOC layout."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist")

    @property
    def class_names(self) -> tuple[str, ...]:
        names_file = self.root / "classes.txt"
        if names_file.exists():
            return tuple(read_name_list(names_file))
        return VOC_CLASSES

    @property
    def num_foreground(self) -> int:
        return len(self.class_names) - 1

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name: str) -> Path:
        return self.root / "SegmentationClass" / f"{name}.png"

    def saliency_path(self, name: str) -> Path:
        return self.root / "saliency" / f"{name}.png"

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def class_list_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}_cls.txt"

    def names(self, split: str) -> list[str]:
        path = self.split_file(split)
        if not path.exists():
            raise FileNotFoundError(f"split list {path} does not exist")
        return read_name_list(path)

    def tags(self, split: str) -> dict[str, list[int]]:
        """Image-level tags of a split: from its class list, else derived from the label maps."""
        path = self.class_list_file(split)
        if path.exists():
            tags = read_class_list(path, self.num_foreground)
            missing = [name for name in self.names(split) if name not in tags]
            if missing:
                raise ValueError(f"{path}: no tags for {len(missing)} images of split {split!r}, e.g. {missing[0]}")
            return {name: tags[name] for name in self.names(split)}
        return {name: tags_from_label(read_label_png(self.label_path(name)), self.num_foreground)
                for name in self.names(split)}
