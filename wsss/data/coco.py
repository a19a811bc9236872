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

Masks are decoded here, without pycocotools but to exactly its masks (those the WSSS COCO ground truth
is made with): polygons are rasterised by the rule of maskApi.c's rleFrPoly (`polygon_mask`: roughly, the
pixels whose centres are inside, by the even-odd rule, on a 5x finer grid), RLE (uncompressed `counts`
lists, as crowd annotations have, and compressed `counts` strings) is decoded following maskApi.c.
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

from ..core.artifacts import ArtifactError, read_json, write_lines

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


def _check_size(segmentation: dict, height: int, width: int) -> None:
    size = segmentation.get("size")
    if size is None or [int(v) for v in size] != [height, width]:
        raise ArtifactError(f"RLE size {size} differs from the image's [{height}, {width}] (height, width)")


def _counts_from_string(counts: str) -> list[int]:
    """The run lengths of a compressed RLE string (pycocotools' rleFrString).

    Each count is written in 5-bit groups, least significant first, as ASCII 48 + group (+ 32 when more
    groups follow); bit 16 of the last group is the sign. From the fourth count on, what is written is
    the difference to the count two before (the previous run of the same value).
    """
    result: list[int] = []
    value = shift = 0
    for position, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ArtifactError(f"compressed RLE: character {char!r} at {position} is outside '0'..'o'")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(result) > 2:
            value += result[-2]
        result.append(value)
        value = shift = 0
    if shift:
        raise ArtifactError("compressed RLE ends in the middle of a count")
    return result


def decode_rle(segmentation: dict, height: int, width: int) -> np.ndarray:
    """An RLE mask as a (height, width) bool array.

    `counts`: a list of run lengths (uncompressed, as crowd annotations have) or a string (compressed,
    see `_counts_from_string`). Runs alternate between 0 and 1, starting with 0, over the pixels in
    column-major order. `size` ([height, width]) must be the image's, and the runs must cover it exactly.
    """
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise ArtifactError(f"an RLE segmentation must be a dict with 'counts' and 'size', got {type(segmentation)}")
    _check_size(segmentation, height, width)
    counts = segmentation["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        counts = _counts_from_string(counts)
    try:
        runs = np.asarray(counts, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ArtifactError("RLE counts must be a string or a list of integers") from None
    if runs.ndim != 1:
        raise ArtifactError("RLE counts must be a string or a flat list of integers")
    if runs.size and runs.min() < 0:
        raise ArtifactError(f"RLE count {int(runs.min())} is negative")
    if int(runs.sum()) != height * width:
        raise ArtifactError(f"RLE counts cover {int(runs.sum())} pixels, the image {height}x{width} has "
                            f"{height * width}")
    flat = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    return flat.reshape((width, height)).T.copy()


_UPSAMPLE = 5  # pycocotools draws polygon outlines on a grid 5 times finer than the pixels
_WINDOW = np.arange(-3, 4)  # steps tried around an estimated crossing (the estimate is off by one at most)


def _crossings(xy: np.ndarray, successor: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where polygon outlines cross the pixel columns' centre lines, as in pycocotools' rleFrPoly
    (maskApi.c): the edges (i, successor[i]) of the (n, 2) float64 vertices `xy`; returns each crossing's
    edge and its column-major pixel index, column * height + row.

    rleFrPoly moves the vertices onto a 5x grid, int(5 * v + 0.5) (C's cast truncates towards zero), and
    walks each edge, the closing one included, one grid step at a time along its longer axis, from its end
    lower on that axis: with slope s, the other coordinate is int(start + s * t + 0.5) at step t. Where
    two consecutive points differ in x, the smaller at 5c + 2 (the line x = c + 0.5 of pixel column c,
    0 <= c < width), it records in column c the row ceil((y - 2) / 5), y the smaller of the two points'
    (clamped to 0..height). Here each crossing is computed directly instead of walking every point: on an
    edge longer in x, the points are those at x = 5c + 2 and 5c + 3; on an edge longer in y, x changes
    after the last step t with int(start + s * t + 0.5) on the near side of the line, found from an
    estimate and settled by evaluating the C expression itself (same float operations, same order) on the
    steps around it. Crossings between two edges' walks only arise left of column 0, so none are lost.
    """
    grid = np.trunc(_UPSAMPLE * xy + 0.5).astype(np.int64)
    x0, y0 = grid[:, 0], grid[:, 1]
    x1, y1 = x0[successor], y0[successor]
    dx, dy = np.abs(x1 - x0), np.abs(y1 - y0)
    x_major = dx >= dy
    flip = np.where(x_major, x0 > x1, y0 > y1)
    sx, sy = np.where(flip, x1, x0), np.where(flip, y1, y0)  # the end lower along the longer axis
    ex = np.where(flip, x0, x1)
    steps = np.maximum(dx, dy)
    rise = np.where(x_major, np.where(flip, y0, y1) - sy, ex - sx).astype(np.float64)
    slope = rise / np.maximum(steps, 1)
    # the x range each walk covers, its end points evaluated as the walk does (exact on x-major edges)
    x_end = np.where(x_major, ex, np.trunc(sx + slope * steps + 0.5).astype(np.int64))
    x_start = np.where(x_major, sx, np.trunc(sx + 0.5).astype(np.int64))
    low, high = np.minimum(x_start, x_end), np.maximum(x_start, x_end)
    # the columns c it crosses, low <= 5c + 2 < 5c + 3 <= high, within the image
    first = np.maximum(-((2 - low) // _UPSAMPLE), 0)
    count = np.maximum(np.minimum((high - 3) // _UPSAMPLE, width - 1) - first + 1, 0)
    edge = np.repeat(np.arange(count.size), count)
    column = np.arange(edge.size) + np.repeat(first - np.cumsum(count) + count, count)
    line = _UPSAMPLE * column + 2
    y = np.empty(edge.size, dtype=np.int64)
    on_x = x_major[edge]
    e, c = edge[on_x], line[on_x]
    start, s = sy[e], slope[e]
    t = c - sx[e]  # steps t and t + 1 are at x = 5c + 2 and 5c + 3
    y[on_x] = np.minimum(np.trunc(start + s * t + 0.5), np.trunc(start + s * (t + 1) + 0.5))
    on_y = ~on_x
    e, c = edge[on_y], line[on_y]
    if e.size:
        start, s = sx[e], slope[e]
        estimate = np.clip(np.floor((c + 0.5 - start) / s), 0, steps[e] - 1).astype(np.int64)
        t = estimate[:, None] + _WINDOW
        x = np.trunc(start[:, None] + s[:, None] * t + 0.5)
        near = (x <= c[:, None]) == (s > 0)[:, None]  # x still at 5c + 2 or before (x falls if s < 0)
        count = near.sum(axis=1)  # near holds for t up to the crossing's first step, then no more
        if not ((count > 0) & (count < _WINDOW.size)).all():
            raise AssertionError("polygon_mask: a crossing fell outside the window around its estimate")
        y[on_y] = sy[e] + estimate + _WINDOW[0] + count - 1  # y grows with t on these edges: step t's
    row = np.clip(-((2 - y) // _UPSAMPLE), 0, height)  # ceil((y - 2) / 5), clamped
    return edge, column * height + row


def polygon_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """The union of polygons (each [x1, y1, x2, y2, ...] in pixels) as a (height, width) bool array,
    exactly as pycocotools makes it (frPyObjects, merge, decode).

    A polygon's crossings (`_crossings`), sorted in column-major order, switch its mask on and off: it is
    on over [crossing 0, crossing 1), [crossing 2, crossing 3), ... (from an odd last one to the image's
    end). All polygons' runs are merged into disjoint ones and painted with np.repeat over the columns
    they span. Pixel (x, y) is in about when its centre (x + 0.5, y + 0.5) is inside a polygon: columns
    2..6 and rows 3..8 for the square [2, 3, 7, 3, 7, 9, 2, 9]. Polygons of one or two points are empty.
    """
    parts = []
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, (list, tuple)) or len(polygon) % 2:
            raise ArtifactError(f"polygon #{index} must be a flat list of x, y pairs")
        if len(polygon) >= 6:  # fewer than 3 points have no area: pycocotools' mask of them is empty too
            parts.append(polygon)
    mask = np.zeros((height, width), dtype=bool)
    if not parts:
        return mask
    sizes = np.array([len(part) // 2 for part in parts])
    try:
        xy = np.array([value for part in parts for value in part], dtype=np.float64).reshape(-1, 2)
        valid = bool((np.abs(xy) < 2 ** 31 / _UPSAMPLE).all())  # C's int on the 5x grid; NaN fails too
    except (TypeError, ValueError):
        valid = False
    if not valid:
        for index, polygon in enumerate(polygons):
            try:
                values = np.array(polygon, dtype=np.float64)
            except (TypeError, ValueError):
                values = np.array([np.nan])
            if values.ndim != 1 or not (np.abs(values) < 2 ** 31 / _UPSAMPLE).all():  # NaN fails too
                raise ArtifactError(f"polygon #{index} has a coordinate that is not a finite number in range")
        raise ArtifactError("a polygon has a coordinate that is not a finite number in range")
    ends = np.cumsum(sizes)
    successor = np.arange(1, len(xy) + 1)
    successor[ends - 1] = ends - sizes  # each polygon's last vertex closes it to its first
    edge, index = _crossings(xy, successor, height, width)
    if not index.size:
        return mask
    # crossings sorted by polygon, then position; a polygon with an odd number is on to the image's end
    part = np.repeat(np.arange(len(parts)), sizes)[edge]
    odd = np.flatnonzero(np.bincount(part, minlength=len(parts)) % 2)
    part, index = np.concatenate((part, odd)), np.concatenate((index, np.full(odd.size, height * width)))
    key = np.sort(part * (height * width + 1) + index) % (height * width + 1)
    starts, stops = key[0::2], key[1::2]
    if len(parts) > 1:  # merge the polygons' runs where they overlap or touch
        order = np.argsort(starts, kind="stable")
        starts, stops = starts[order], np.maximum.accumulate(stops[order])
        opens = np.concatenate(([True], starts[1:] > stops[:-1]))
        starts, stops = starts[opens], stops[np.concatenate((opens[1:], [True]))]
    first, last = int(starts[0]) // height, -(-int(stops[-1]) // height)
    lengths = np.empty(2 * starts.size + 1, dtype=np.int64)  # off, on, off, ..., on, off
    lengths[0:-1:2] = starts - np.concatenate(([first * height], stops[:-1]))
    lengths[1::2] = stops - starts
    lengths[-1] = last * height - stops[-1]
    block = np.repeat(np.arange(lengths.size) % 2 == 1, lengths)  # columns first..last-1, one by one
    mask[:, first:last] = block.reshape(last - first, height).T
    return mask


def annotation_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask of an annotation's `segmentation`: polygons or RLE."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        return polygon_mask(segmentation, height, width)
    return decode_rle(segmentation, height, width)


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
    from .voc import write_label_png

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
    from .voc import read_name_list

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
    from .voc import write_class_list

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
