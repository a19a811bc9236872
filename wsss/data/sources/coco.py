"""COCO 2014 instance annotations converted into the VOC layout (`data/voc.py`) every dataset is read in.

`convert_split` reads one instance file (instances_train2014.json / instances_val2014.json) and writes,
under a dataset root, JPEGImages/NAME.jpg (the images, moved), SegmentationClass/NAME.png (class maps),
ImageSets/Segmentation/SPLIT.txt and SPLIT_cls.txt (names and 0-based foreground tags) and classes.txt.

Classes: the 80 categories, ordered by COCO id (1..90 with gaps), become labels 1..80; 0 is background.
Names with spaces ("traffic light") are written with underscores ("traffic_light"), as the layout's
lists are split on whitespace. A category that is not one of COCO's 80 (`COCO_CATEGORIES`: an id COCO does
not use, or another name for its id) is refused, naming it and the annotation file; a file may list fewer.

Overlap rule, for each image's class map:
  1. crowd regions (iscrowd=1) are painted 255 (ignore) first;
  2. then the other instances, in order of decreasing `area`, so that where two overlap the smaller
     one wins (it is usually the one in front); an instance painted over a crowd region wins there;
  3. what no annotation covers is background (0).
An image's tags are the categories annotated in it, crowd annotations included.

Images without any annotated object are left out of the lists, as the WSSS COCO protocols do
(82,081 of the 82,783 train2014 images, 40,137 of the 40,504 val2014 images).

An annotation's mask is decoded by `coco_masks.py` (polygons and RLE, to exactly pycocotools' masks).
Errors are ArtifactError naming the annotation file and the image, annotation or category at fault; how they
name a file is `convert_split`'s `describe` (the assembly names archive members).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
from PIL import Image

from ...core.artifacts import ArtifactError, read_json, write_lines
from ..voc import read_name_list, write_class_list, write_label_png
from .coco_masks import annotation_mask

IGNORE_INDEX = 255
BACKGROUND = "background"
COCO_CATEGORIES = {  # COCO's 80 thing categories by id, as instances_{train,val}2014.json list them
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck", 9: "boat",
    10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird",
    17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra",
    25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee",
    35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork",
    49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli",
    57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch",
    64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse",
    75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier",
    90: "toothbrush",
}


def category_table(categories: list[dict]) -> tuple[dict[int, int], list[str]]:
    """COCO category id -> label 1..K in ascending id order, and the class names with "background" first.

    Whitespace in a name becomes "_" (the layout's lists are split on whitespace). A duplicate id or name,
    a category named "background" and more than 254 categories (labels are uint8, 255 is ignore) are errors.
    """
    names_of: dict[int, str] = {}
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise ArtifactError(f"category #{index} has no 'id' or no 'name': {category!r}")
        category_id, name = category["id"], "_".join(str(category["name"]).split())
        if not isinstance(category_id, int) or isinstance(category_id, bool):
            raise ArtifactError(f"category #{index} ({name!r}): id {category_id!r} is not an integer")
        if category_id in names_of:
            raise ArtifactError(f"category id {category_id} is listed twice ({names_of[category_id]!r} and {name!r})")
        if not name:
            raise ArtifactError(f"category id {category_id} has an empty name")
        names_of[category_id] = name
    if not names_of:
        raise ArtifactError("no categories")
    if len(names_of) > IGNORE_INDEX - 1:
        raise ArtifactError(f"{len(names_of)} categories: at most {IGNORE_INDEX - 1} fit a uint8 label map")
    ids = sorted(names_of)
    first_of: dict[str, int] = {}
    for category_id in ids:
        name = names_of[category_id]
        if name == BACKGROUND:
            raise ArtifactError(f"category id {category_id} is named {BACKGROUND!r}, the name of label 0")
        if name in first_of:
            raise ArtifactError(f"category ids {first_of[name]} and {category_id} have the same name {name!r}")
        first_of[name] = category_id
    return {category_id: label for label, category_id in enumerate(ids, 1)}, [BACKGROUND] + list(first_of)


def check_coco_categories(categories: list[dict]) -> None:
    """Every category (checked by `category_table` first) is one of COCO's 80: its id is one COCO uses and its
    name is COCO's for that id (whitespace aside); an error names the category's id and name."""
    for category in categories:
        category_id, name = category["id"], " ".join(str(category["name"]).split())
        if category_id not in COCO_CATEGORIES:
            raise ArtifactError(f"category id {category_id} ({name!r}) is not one of COCO's 80 thing categories "
                                f"(ids 1..90, with gaps)")
        if name != COCO_CATEGORIES[category_id]:
            raise ArtifactError(f"category id {category_id} is named {name!r}; COCO's category {category_id} is "
                                f"{COCO_CATEGORIES[category_id]!r}")


def rasterise(image: dict, annotations: list[dict], label_of: dict[int, int]) -> np.ndarray:
    """The (H, W) uint8 class map of an image from its annotations, by the module's overlap rule: crowd
    regions 255 first, then instances from the largest `area` to the smallest, background 0 elsewhere.

    An annotation without `area` is ranked by its pixel count. Errors name the annotation id.
    """
    height, width = int(image["height"]), int(image["width"])
    label = np.zeros((height, width), dtype=np.uint8)
    instances = []
    for annotation in annotations:
        name = f"annotation {annotation.get('id')} (image {image.get('id')})"
        if annotation.get("image_id", image.get("id")) != image.get("id"):
            raise ArtifactError(f"{name}: it belongs to image {annotation.get('image_id')}")
        if annotation.get("category_id") not in label_of:
            raise ArtifactError(f"{name}: unknown category id {annotation.get('category_id')!r}")
        try:
            mask = annotation_mask(annotation, height, width)
        except ArtifactError as error:
            raise ArtifactError(f"{name}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ArtifactError(f"{name}: unreadable segmentation ({type(error).__name__}: {error})") from None
        if annotation.get("iscrowd", 0):
            label[mask] = IGNORE_INDEX
        else:
            area = annotation.get("area")
            instances.append((float(mask.sum() if area is None else area), mask, label_of[annotation["category_id"]]))
    for _, mask, value in sorted(instances, key=lambda instance: -instance[0]):  # stable: equal areas keep order
        label[mask] = value
    return label


def image_tags(annotations: list[dict], label_of: dict[int, int]) -> list[int]:
    """Sorted 0-based foreground classes of the categories annotated in an image (crowd annotations included)."""
    return sorted({label_of[annotation["category_id"]] - 1 for annotation in annotations})


def _read_annotations(annotation_file: Path, shown_as: str) -> tuple[dict, dict[int, int], list[str]]:
    """The instance file's JSON and its category table (COCO's categories only); errors name the file as
    `shown_as`."""
    data = read_json(annotation_file, shown_as)
    if not isinstance(data, dict):
        raise ArtifactError(f"{shown_as} is not a COCO instance file (not a JSON object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ArtifactError(f"{shown_as} has no {key!r} list: not a COCO instance file")
    try:
        label_of, class_names = category_table(data["categories"])
        check_coco_categories(data["categories"])
    except ArtifactError as error:
        raise ArtifactError(f"{shown_as}: {error}") from None
    return data, label_of, class_names


def _index(data: dict, label_of: dict[int, int], annotation_file: str) -> tuple[dict[int, dict], dict[int, list]]:
    """Images by id and their annotations; a duplicate id or name, or an annotation naming an unknown image
    or category, is an error naming it (and the annotation file as `annotation_file` gives it)."""
    images: dict[int, dict] = {}
    stems: dict[str, int] = {}
    for index, image in enumerate(data["images"]):
        missing = [key for key in ("id", "file_name", "height", "width") if key not in image]
        if missing:
            raise ArtifactError(f"{annotation_file}: image #{index} ({image.get('id')}) has no {missing[0]!r}")
        if image["id"] in images:
            raise ArtifactError(f"{annotation_file}: image id {image['id']} is listed twice")
        stem = PurePosixPath(image["file_name"]).stem
        if not stem or len(stem.split()) != 1 or stem != stem.strip():
            raise ArtifactError(f"{annotation_file}: image {image['id']}: file name {image['file_name']!r} cannot be "
                                f"a name in the lists (empty or with whitespace)")
        if stem in stems:
            raise ArtifactError(f"{annotation_file}: images {stems[stem]} and {image['id']} have the same name {stem}")
        stems[stem] = image["id"]
        images[image["id"]] = image
    annotations_of: dict[int, list] = {}
    for index, annotation in enumerate(data["annotations"]):
        name = f"annotation {annotation.get('id', f'#{index}')}"
        missing = [key for key in ("id", "image_id", "category_id", "segmentation") if key not in annotation]
        if missing:
            raise ArtifactError(f"{annotation_file}: {name} has no {missing[0]!r}")
        if annotation["image_id"] not in images:
            raise ArtifactError(f"{annotation_file}: {name} names an unknown image id {annotation['image_id']!r}")
        if annotation["category_id"] not in label_of:
            raise ArtifactError(f"{annotation_file}: {name} names an unknown category id "
                                f"{annotation['category_id']!r}")
        annotations_of.setdefault(annotation["image_id"], []).append(annotation)
    return images, annotations_of


def _check_image(path: Path, shown_as: str, image: dict, annotation_file: str) -> None:
    """The image file (named in errors as `shown_as`) exists, is a JPEG that decodes whole (as the index will
    decode it) and has the size the annotation file gives."""
    if not path.is_file():
        raise ArtifactError(f"{shown_as} does not exist (image {image['id']} of {annotation_file})")
    try:
        with Image.open(path) as opened:
            size, kind = opened.size, opened.format
            opened.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise ArtifactError(f"{shown_as} cannot be decoded (truncated or not an image; image {image['id']} of "
                            f"{annotation_file}): {error}") from None
    if kind != "JPEG":
        raise ArtifactError(f"{shown_as} is a {kind} file, not a JPEG (image {image['id']} of {annotation_file})")
    if size != (int(image["width"]), int(image["height"])):
        raise ArtifactError(f"{shown_as}: size {size[0]}x{size[1]} differs from the {image['width']}x"
                            f"{image['height']} that {annotation_file} gives for image {image['id']}")


def _convert_image(task: tuple[dict, list[dict], str], image_dir: str, root: str, label_of: dict[int, int],
                   annotation_file: str) -> tuple[str, list[int]]:
    """Check one image (task: the image's record, its annotations, how errors name its file) and write its class
    map; return its name and tags (the image is moved later)."""
    image, annotations, shown_as = task
    stem = PurePosixPath(image["file_name"]).stem
    _check_image(Path(image_dir) / image["file_name"], shown_as, image, annotation_file)
    target = Path(root) / "JPEGImages" / f"{stem}.jpg"
    if target.exists():
        raise ArtifactError(f"{shown_as}: image {image['id']} of {annotation_file} is named {stem}, as an image "
                            f"converted before: converted twice?")
    try:
        label = rasterise(image, annotations, label_of)
    except ArtifactError as error:
        raise ArtifactError(f"{annotation_file}: {error}") from None
    write_label_png(Path(root) / "SegmentationClass" / f"{stem}.png", label, atomic=False)
    return stem, image_tags(annotations, label_of)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        shutil.move(source, target)  # image_dir on another file system


def _check_classes(path: Path, class_names: list[str], annotation_file: str) -> None:
    """An existing classes.txt (from another split) must list the same classes."""
    listed = read_name_list(path)
    if listed != class_names:
        at = next((i for i, (a, b) in enumerate(zip(listed, class_names, strict=False)) if a != b),
                  min(len(listed), len(class_names)))
        raise ArtifactError(f"the split converted before (its {path.name}) has {len(listed)} classes, "
                            f"{annotation_file} has {len(class_names)}, and they differ from position {at} on "
                            f"({listed[at:at + 2]} vs {class_names[at:at + 2]})")


def convert_split(annotation_file: str | os.PathLike, image_dir: str | os.PathLike, root: str | os.PathLike,
                  split: str, workers: int = 1, progress=None, describe: Callable[[Path], str] = str) -> dict:
    """Convert one COCO split into the VOC layout under `root`; return counts (images listed, left out,
    annotations used).

    Every image with at least one annotation (crowd included) is checked (its file exists, is a JPEG of
    the size the JSON gives), rasterised by the overlap rule into root/SegmentationClass/NAME.png, and
    moved (os.replace) from image_dir/FILE_NAME to root/JPEGImages/NAME.jpg; images are moved only once
    every class map is written, so a failed conversion leaves image_dir as it was. Then the split's lists
    and root/classes.txt are written; a classes.txt there already (from the other split) must be equal.

    `root` is meant to be a temporary folder that appears as a whole (the class maps are not written
    atomically). `workers` > 1 rasterises in a process pool; `progress` is a tqdm-like factory or None.
    `describe` gives how errors name the annotation file and an image file (default: the path).
    """
    annotation_file, image_dir, root = Path(annotation_file), Path(image_dir), Path(root)
    annotation_name = describe(annotation_file)
    data, label_of, class_names = _read_annotations(annotation_file, annotation_name)
    images, annotations_of = _index(data, label_of, annotation_name)
    classes_path = root / "classes.txt"
    if classes_path.exists():
        _check_classes(classes_path, class_names, annotation_name)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    kept = sorted((image for image in images.values() if image["id"] in annotations_of),
                  key=lambda image: PurePosixPath(image["file_name"]).stem)
    tasks = [(image, annotations_of[image["id"]], describe(image_dir / image["file_name"])) for image in kept]
    convert = functools.partial(_convert_image, image_dir=str(image_dir), root=str(root), label_of=label_of,
                                annotation_file=annotation_name)
    bar = progress(total=len(tasks), desc=f"{split}: class maps") if progress else None
    tags: dict[str, list[int]] = {}
    try:
        if workers > 1 and len(tasks) > 1:
            import multiprocessing

            chunksize = max(1, min(64, len(tasks) // (workers * 4)))
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for stem, image_tags_ in pool.imap(convert, tasks, chunksize=chunksize):
                    tags[stem] = image_tags_
                    if bar is not None:
                        bar.update(1)
        else:
            for task in tasks:
                stem, image_tags_ = convert(task)
                tags[stem] = image_tags_
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    for image in kept:
        _move(image_dir / image["file_name"], root / "JPEGImages" / f"{PurePosixPath(image['file_name']).stem}.jpg")
    write_lines(root / "ImageSets" / "Segmentation" / f"{split}.txt", list(tags))
    write_class_list(root / "ImageSets" / "Segmentation" / f"{split}_cls.txt", tags)
    if not classes_path.exists():
        write_lines(classes_path, class_names)
    return {"images_listed": len(kept), "images_left_out": len(images) - len(kept),
            "annotations_used": sum(len(annotations) for annotations in annotations_of.values())}
