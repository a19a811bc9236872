"""Writing a generated dataset: every image from its own seed, in PASCAL VOC layout, with the saliency maps, the
parts maps, `dataset.json` (what made it) and `diagnostics.json`; the root appears only when complete."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ....core.artifacts import atomic_directory, write_lines
from ...parts import PARTS_FOLDER
from ...voc import tags_from_label, write_class_list, write_label_png
from .backgrounds import CONTEXT_TEXTURE
from .diagnostics import split_diagnostics
from .noise import Grid
from .options import class_table, class_weights, resolve_options
from .scene import render

# the generator's name in dataset.json: its module's path before data/sources/, kept so that the files it writes
# (and the content hashes of the runs made from them) stay the same
GENERATOR = "wsss.data.synthetic"
GENERATOR_VERSION = 2




def generate_sample(split: str, index: int, seed: int, options: dict | None = None) -> dict:
    """One image of a split in memory: image (H, W, 3), label (H, W), saliency (H, W), parts (H, W) and its
    figures; exactly what `generate_dataset` writes for that (split, index, seed, options), before JPEG."""
    options = resolve_options(options)
    return _sample(Grid(options["image_size"]), split, index, seed, options)


def _sample(grid, split, index, seed, options):
    """The image from SeedSequence([seed, crc32(split), index]) (plus an attempt number in the rare case that
    no object stays visible): independent of the order and the other splits."""
    for attempt in range(100):
        entropy = [seed, zlib.crc32(split.encode("utf-8")), index] + ([attempt] if attempt else [])
        sample = render(np.random.default_rng(np.random.SeedSequence(entropy)), grid, options)
        if tags_from_label(sample["label"], options["num_classes"]):
            return sample
    raise RuntimeError(f"could not generate an image with a visible object for {split} {index}")  # pragma: no cover


def check_splits(splits) -> dict[str, int]:
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"splits must be a non-empty dict {{name: number of images}}, got {splits!r}")
    out = {}
    for name, count in splits.items():
        if not isinstance(name, str) or not name or any(ch.isspace() or ch in "/\\" for ch in name) \
                or name.startswith("."):
            raise ValueError(f"bad split name {name!r}")
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"split {name!r}: the number of images must be a non-negative integer, got {count!r}")
        out[name] = int(count)
    return out


def generate_dataset(root, splits: dict[str, int], seed: int, options: dict | None = None) -> dict:
    """Write the synthetic dataset in VOC layout at `root` (which must not exist); return diagnostics.

    `splits` maps split names to image counts, e.g. {"train": 600, "val": 200}; `options` overrides DEFAULTS
    (unknown keys raise ValueError). The dataset is built in a temporary sibling directory and renamed onto
    `root` only when complete.
    """
    options = resolve_options(options)
    splits = check_splits(splits)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    root = Path(root)
    if root.exists() or root.is_symlink():
        raise FileExistsError(f"dataset root {root} already exists")
    with atomic_directory(root) as temporary:
        return _build(temporary, splits, int(seed), options)


def write_sample(out: Path, name: str, sample: dict, options: dict) -> None:
    """One image's files: the JPEG, the class mask, the saliency map and the parts map."""
    Image.fromarray(sample["image"], mode="RGB").save(out / "JPEGImages" / f"{name}.jpg", format="JPEG",
                                                      quality=options["jpeg_quality"], subsampling=0)
    write_label_png(out / "SegmentationClass" / f"{name}.png", sample["label"], atomic=False)
    Image.fromarray(sample["saliency"], mode="L").save(out / "saliency" / f"{name}.png", format="PNG")
    Image.fromarray(sample["parts"], mode="L").save(out / PARTS_FOLDER / f"{name}.png", format="PNG")


def _build(out: Path, splits: dict[str, int], seed: int, options: dict) -> dict:
    for sub in ("JPEGImages", "SegmentationClass", "saliency", PARTS_FOLDER, "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True)
    classes = class_table(options)
    names = [entry["name"] for entry in classes]
    grid = Grid(options["image_size"])
    per_split = {}
    for split, count in splits.items():
        image_names, tags, records = [], {}, []
        for index in range(count):
            name = f"{split}_{index:06d}"
            sample = _sample(grid, split, index, seed, options)
            write_sample(out, name, sample, options)
            image_tags = tags_from_label(sample["label"], options["num_classes"])
            image_names.append(name)
            tags[name] = image_tags
            records.append({**{key: value for key, value in sample.items()
                               if key not in ("image", "label", "saliency", "parts")}, "tags": image_tags})
        write_lines(out / "ImageSets" / "Segmentation" / f"{split}.txt", image_names)
        write_class_list(out / "ImageSets" / "Segmentation" / f"{split}_cls.txt", tags)
        per_split[split] = split_diagnostics(records, options, names)

    write_lines(out / "classes.txt", ["background", *names])
    weights = [round(float(w), 6) for w in class_weights(options["num_classes"], options["class_imbalance"])]
    context = names[options["context_class"]]
    diagnostics = {"generator": GENERATOR, "seed": seed, "class_names": names, "class_weights": weights,
                   "context_class": context, "context_texture": CONTEXT_TEXTURE, "splits": per_split}
    dataset = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "splits": splits,
               "options": options, "class_names": ["background", *names], "class_weights": weights,
               "classes": [{**entry, "colour": list(entry["colour"])} for entry in classes],
               "context_class": context, "context_texture": CONTEXT_TEXTURE}
    for filename, payload in (("dataset.json", dataset), ("diagnostics.json", diagnostics)):
        with open(out / filename, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return diagnostics
