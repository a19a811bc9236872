"""PASCAL VOC layout: the one on-disk format every dataset here is read from.

A dataset root holds
    JPEGImages/NAME.jpg                 RGB images
    SegmentationClass/NAME.png          palette PNG, 0 = background, 1..C = classes, 255 = ignore
                                        (a split's masks may lie in another folder: SegmentationClassAug)
    ImageSets/Segmentation/SPLIT.txt    one image name a line
    ImageSets/Segmentation/SPLIT_cls.txt  "NAME c1 c2 ..." with 0-based foreground classes (RCA's format)
    saliency/NAME.png                   optional grey-level saliency maps (0..255)
    classes.txt                         optional class names, background first (VOC's names otherwise)

Readers name the file they fail on. A layout opened with the dataset's manifest (`data/manifest.py`)
takes its split lists and tags from it and checks every file it reads against the content hash the
manifest recorded, so a file changed after indexing is never used silently.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.artifacts import ArtifactError, atomic_file, invalidate, read_json, write_lines

IGNORE_INDEX = 255
MANIFEST_FORMAT = 1  # of the dataset manifest (`data/manifest.py` builds it, `read_manifest` reads it)

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


def write_label_png(path: str | os.PathLike, label: np.ndarray, atomic: bool = True) -> None:
    """Write a (H, W) uint8 label map as a VOC palette PNG, atomically (`atomic=False` inside a temporary
    folder that appears as a whole)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be 2-D, got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise ValueError(f"{path}: label values must lie in 0..255")
        label = label.astype(np.uint8)
    image = Image.fromarray(label, mode="P")
    image.putpalette(_PALETTE_BYTES)
    if not atomic:
        image.save(path, format="PNG")
        return
    with atomic_file(path) as temporary:
        image.save(temporary, format="PNG")


def decode_image(source, path, mode: str | None = None) -> np.ndarray:
    """Decode an image file (a path or bytes) fully; errors name `path` (truncated files included)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if mode == "label":
                if image.mode not in ("P", "L"):
                    raise ArtifactError(f"{path}: expected a palette or grey PNG label map, got mode {image.mode}")
                return np.array(image, dtype=np.uint8)
            return np.array(image.convert(mode), dtype=np.uint8)
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ArtifactError(f"{path} cannot be decoded (truncated or not an image): {error}") from None


def check_label_values(label: np.ndarray, path, num_classes: int) -> None:
    """Label values must be classes (0..num_classes-1) or 255 (ignore)."""
    bad = np.unique(label[(label >= num_classes) & (label != IGNORE_INDEX)])
    if bad.size:
        raise ArtifactError(f"{path}: label value(s) {bad[:5].tolist()} outside the classes 0..{num_classes - 1} "
                            f"and {IGNORE_INDEX} (ignore)")


def read_label_png(path: str | os.PathLike, shape: tuple[int, int] | None = None,
                   num_classes: int | None = None) -> np.ndarray:
    """Read a palette (or grey) PNG label map as (H, W) uint8 indices; check its size and values when given."""
    label = decode_image(path, path, "label")
    if shape is not None and label.shape != tuple(shape):
        raise ArtifactError(f"{path}: size {label.shape[1]}x{label.shape[0]} differs from its image's "
                            f"{shape[1]}x{shape[0]}")
    if num_classes is not None:
        check_label_values(label, path, num_classes)
    return label


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB."""
    return decode_image(path, path, "RGB")


def read_grey(path: str | os.PathLike) -> np.ndarray:
    return decode_image(path, path, "L")


def read_name_list(path: str | os.PathLike, shown_as: str | None = None) -> list[str]:
    """One name a line (the first field); a name listed twice is an error naming the file (`shown_as`, else its
    path) and the lines."""
    path = Path(path)
    shown_as = shown_as or str(path)
    if not path.is_file():
        raise ArtifactError(f"list file {shown_as} does not exist")
    names, first_line = [], {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] in first_line:
                raise ArtifactError(f"{shown_as}:{line_number}: {fields[0]!r} is listed twice (first on line "
                                    f"{first_line[fields[0]]})")
            first_line[fields[0]] = line_number
            names.append(fields[0])
    return names


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
                raise ArtifactError(f"{path}:{line_number}: class indices must be integers: {line.strip()!r}") from None
            if num_classes is not None and any(c < 0 or c >= num_classes for c in classes):
                raise ArtifactError(f"{path}:{line_number}: class index outside 0..{num_classes - 1}: "
                                    f"{line.strip()!r}")
            if fields[0] in tags:
                raise ArtifactError(f"{path}:{line_number}: {fields[0]!r} is listed twice")
            tags[fields[0]] = classes
    return tags


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


DEFAULT_MASKS = "SegmentationClass"


class VOCLayout:
    """Paths, lists and checked readers of one dataset root in VOC layout.

    `mask_dirs` maps a split to the folder of its masks (default SegmentationClass): VOC's train
    masks are in SegmentationClass, train_aug's in SegmentationClassAug. `manifest` (a dict from
    `data.manifest`, with its path `manifest_path`) makes the split lists, tags and mask folders come
    from the manifest and every file read be checked against its recorded content hash.
    """

    def __init__(self, root: str | os.PathLike, manifest: dict | None = None,
                 manifest_path: str | os.PathLike | None = None, mask_dirs: dict[str, str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArtifactError(f"dataset root {self.root} does not exist")
        self.manifest = manifest
        self.manifest_path = Path(manifest_path) if manifest_path else None
        self.mask_dirs = dict(manifest.get("mask_dirs", {}) if manifest is not None else mask_dirs or {})

    def __repr__(self) -> str:
        return f"VOCLayout({str(self.root)!r}, manifest={str(self.manifest_path) if self.manifest else None})"

    @functools.cached_property
    def class_names(self) -> tuple[str, ...]:
        if self.manifest is not None:
            return tuple(self.manifest["class_names"])
        names_file = self.root / "classes.txt"
        if names_file.exists():
            return tuple(read_name_list(names_file))
        return VOC_CLASSES

    @property
    def num_foreground(self) -> int:
        return len(self.class_names) - 1

    def image_path(self, name: str) -> Path:
        return self.root / "JPEGImages" / f"{name}.jpg"

    def label_path(self, name: str, split: str | None = None) -> Path:
        """The mask of an image, in the folder of `split`'s masks."""
        return self.root / self.mask_dirs.get(split, DEFAULT_MASKS) / f"{name}.png"

    def saliency_path(self, name: str) -> Path:
        return self.root / "saliency" / f"{name}.png"

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}.txt"

    def class_list_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Segmentation" / f"{split}_cls.txt"

    def _indexed_split(self, split: str) -> dict:
        if split not in self.manifest["splits"]:
            raise ArtifactError(f"split {split!r} is not in the dataset manifest {self.manifest_path} "
                                f"(indexed: {', '.join(self.manifest['splits'])})")
        return self.manifest["splits"][split]

    def names(self, split: str) -> list[str]:
        if self.manifest is not None:
            return list(self._indexed_split(split)["names"])
        names = read_name_list(self.split_file(split))
        if not names:
            raise ArtifactError(f"split list {self.split_file(split)} is empty")
        return names

    def tags(self, split: str) -> dict[str, list[int]]:
        """Image-level tags of a split: from its class list, else derived from the label maps."""
        if self.manifest is not None:
            return {name: list(tags) for name, tags in self._indexed_split(split)["tags"].items()}
        names = self.names(split)
        path = self.class_list_file(split)
        if path.exists():
            tags = read_class_list(path, self.num_foreground)
            missing = [name for name in names if name not in tags]
            if missing:
                raise ArtifactError(f"{path}: no tags for {len(missing)} images of split {split!r}, "
                                    f"e.g. {missing[0]}")
            return {name: tags[name] for name in names}
        return {name: tags_from_label(self.read_mask(name, split), self.num_foreground) for name in names}

    def _read_checked(self, path: Path) -> bytes | Path:
        """The file's bytes, checked against the manifest's hash (its path when there is no manifest)."""
        if self.manifest is None:
            return path
        relative = path.relative_to(self.root).as_posix()
        record = self.manifest["files"].get(relative)
        if record is None:
            if not path.exists():
                raise ArtifactError(f"{path} does not exist")
            raise invalidate(self.manifest_path, f"{path} was added after the dataset was indexed; the index is stale")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != record["sha256"]:
            state = "was removed" if data is None else "changed"
            raise invalidate(self.manifest_path, f"{path} {state} after the dataset was indexed; the index is "
                                                 f"stale")
        return data

    def content_id(self, names: list[str]) -> str:
        """What identifies the data a run reads: the manifest's content hash, else a hash of the class names
        and the named images' contents."""
        if self.manifest is not None:
            return self.manifest["content_sha256"]
        digest = hashlib.sha256("\0".join(self.class_names).encode())
        for name in names:
            digest.update(f"\0{name}\0".encode() + self.image_path(name).read_bytes())
        return digest.hexdigest()

    def image_size(self, name: str) -> tuple[int, int]:
        """(height, width) of an image: from the manifest, else from the file's header."""
        path = self.image_path(name)
        if self.manifest is not None:
            return tuple(self.manifest["files"][path.relative_to(self.root).as_posix()]["shape"])
        try:
            with Image.open(path) as image:
                return image.height, image.width
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{path} cannot be read: {error}") from None

    def read_image(self, name: str) -> np.ndarray:
        path = self.image_path(name)
        return decode_image(self._read_checked(path), path, "RGB")

    def read_mask(self, name: str, split: str | None = None) -> np.ndarray:
        """The true label map (from `split`'s mask folder), checked: values classes or 255."""
        path = self.label_path(name, split)
        label = decode_image(self._read_checked(path), path, "label")
        if self.manifest is None:
            check_label_values(label, path, len(self.class_names))
        return label

    def read_saliency(self, name: str) -> np.ndarray:
        path = self.saliency_path(name)
        if not path.exists():
            raise ArtifactError(f"saliency map {path} does not exist (pseudo_labels.mode 'saliency' needs one per "
                                f"image)")
        return decode_image(self._read_checked(path), path, "L")


def open_layout(root: str | os.PathLike | VOCLayout, manifest_path: str | os.PathLike | None = None) -> VOCLayout:
    """A layout from a root (and the dataset's manifest, when given); a layout is returned as it is."""
    if isinstance(root, VOCLayout):
        return root
    if manifest_path is None:
        return VOCLayout(root)
    return VOCLayout(root, read_manifest(manifest_path), manifest_path)


def read_manifest(path: str | os.PathLike) -> dict:
    """A dataset manifest (`data/manifest.py`), checked to be one of this format."""
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path} is not a dataset manifest of format {MANIFEST_FORMAT}")
    return manifest
