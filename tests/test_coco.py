"""COCO instance annotations -> VOC layout (wsss/data/sources/coco.py): mask decoding, the overlap rule, the conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from wsss.core.artifacts import ArtifactError
from wsss.data.sources import coco, coco_masks
from wsss.data.voc import VOCLayout, read_class_list, read_label_png, read_name_list

# --- a compressed-RLE encoder written from pycocotools' rleEncode / rleToString (maskApi.c) ---

def encode_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a bool mask over its pixels in column-major order, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    counts, value, run = [], False, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return counts


def counts_to_string(counts: list[int]) -> str:
    """rleToString: from the fourth count on the difference to the count two before, each written in 5-bit
    groups (least significant first) as chr(48 + group), +32 while more groups follow; bit 16 of the last
    group carries the sign."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


# --- mask decoding ---

def test_polygon_square_takes_the_pixels_whose_centres_are_inside():
    # pycocotools' rule: the square from (2, 3) to (7, 9) covers columns 2..6 and rows 3..8 (pixel (x, y)
    # spans [x, x + 1) x [y, y + 1)); the pixels under its right and bottom edges are not in it
    mask = coco_masks.polygon_mask([[2, 3, 7, 3, 7, 9, 2, 9]], 12, 12)
    expected = np.zeros((12, 12), dtype=bool)
    expected[3:9, 2:7] = True
    assert mask.dtype == bool and mask.shape == (12, 12) and mask.flags.c_contiguous
    assert mask.sum() == 30
    assert np.array_equal(mask, expected)


def test_polygons_of_one_annotation_are_united():
    mask = coco_masks.polygon_mask([[0, 0, 2, 0, 2, 2, 0, 2], [6, 1, 8, 1, 8, 3, 6, 3]], 5, 10)
    assert mask.sum() == 4 + 4
    assert mask[0:2, 0:2].all() and mask[1:3, 6:8].all()


# Masks made once with pycocotools 2.0.11 (mask.decode(mask.merge(mask.frPyObjects(polygons, h, w)))),
# written as column-major run lengths starting with a run of zeros (`encode_counts`): (polygons, h, w, counts)
PYCOCOTOOLS_POLYGON_MASKS = {
    "triangle, fractional vertices": (
        [[1.3, 0.6, 13.7, 4.2, 5.45, 10.9]], 12, 15,
        [25, 2, 10, 5, 7, 8, 5, 9, 3, 8, 4, 7, 6, 5, 7, 5, 7, 4, 9, 2, 10, 1, 31]),
    "self-intersecting star, its centre a hole (even-odd rule)": (
        [[10, 0.5, 13.2, 18.6, 1.1, 6.8, 19.4, 6.3, 5.7, 18.9]], 20, 21,
        [47, 1, 19, 2, 18, 3, 17, 4, 16, 5, 4, 2, 9, 4, 2, 4, 17, 2, 7, 4, 16, 4, 8, 1, 11, 2, 5, 3, 10, 6, 2, 3,
         9, 5, 15, 4, 15, 4, 16, 3, 17, 2, 18, 1, 53]),
    "vertices beyond the image's border": (
        [[-4.6, -2.2, 9.9, 1.4, 12.8, 14.5, 3.1, 11.7]], 9, 8,
        [0, 7, 2, 45, 1, 8, 1, 8]),
    "overlapping parts, a tiny one and a collinear one": (
        [[1.5, 1.5, 8.25, 2.0, 6.6, 7.75], [4.0, 3.0, 11.0, 3.4, 10.2, 9.9, 4.4, 8.8],
         [12.2, 1.1, 12.6, 1.3, 12.3, 1.7], [0, 9, 3, 9.5, 6, 10]], 11, 13,
        [24, 1, 10, 2, 9, 7, 4, 7, 4, 7, 4, 7, 5, 7, 4, 7, 4, 4, 16, 1, 9]),
    "steep and shallow edges": (
        [[0.2, 0.1, 0.9, 13.8, 15.7, 12.6, 15.1, 0.4, 7.3, 6.6]], 14, 16,
        [0, 5, 10, 13, 2, 12, 3, 11, 4, 10, 5, 8, 7, 7, 7, 7, 7, 7, 6, 8, 5, 9, 4, 10, 3, 11, 3, 11, 2, 12, 7, 7, 1]),
}


@pytest.mark.parametrize("case", list(PYCOCOTOOLS_POLYGON_MASKS))
def test_polygon_masks_equal_those_of_pycocotools(case):
    polygons, height, width, counts = PYCOCOTOOLS_POLYGON_MASKS[case]
    mask = coco_masks.polygon_mask(polygons, height, width)
    assert mask.shape == (height, width)
    assert encode_counts(mask) == counts


def test_polygons_without_area_are_empty_and_bad_coordinates_are_errors():
    assert not coco_masks.polygon_mask([[3, 3], [1, 1, 4, 3], [1, 1, 4, 1, 7, 1]], 6, 8).any()  # point, segment, line
    assert not coco_masks.polygon_mask([], 6, 8).any()
    with pytest.raises(ArtifactError, match="polygon #1 must be a flat list"):
        coco_masks.polygon_mask([[0, 0, 4, 0, 4, 4], [1, 2, 3]], 6, 8)
    with pytest.raises(ArtifactError, match="polygon #1 has a coordinate that is not a finite number"):
        coco_masks.polygon_mask([[0, 0, 4, 0, 4, 4], [0, 0, 4, float("nan"), 4, 4]], 6, 8)
    with pytest.raises(ArtifactError, match="polygon #0 has a coordinate that is not a finite number"):
        coco_masks.polygon_mask([[0, 0, "x", 0, 4, 4]], 6, 8)


def test_uncompressed_rle_is_column_major():
    # 3 rows x 4 columns; in column-major order the pixels are
    # column 0: 0 1 1 | column 1: 0 0 0 | column 2: 1 1 1 | column 3: 1 0 0
    expected = np.array([[0, 0, 1, 1],
                         [1, 0, 1, 0],
                         [1, 0, 1, 0]], dtype=bool)
    rle = {"size": [3, 4], "counts": [1, 2, 3, 4, 2]}
    mask = coco_masks.decode_rle(rle, 3, 4)
    assert mask.dtype == bool and mask.shape == (3, 4)
    assert np.array_equal(mask, expected)
    assert encode_counts(expected) == [1, 2, 3, 4, 2]


def test_rle_starting_with_foreground_has_a_zero_first_run():
    mask = coco_masks.decode_rle({"size": [2, 2], "counts": [0, 3, 1]}, 2, 2)
    assert np.array_equal(mask, np.array([[1, 1], [1, 0]], dtype=bool))


def test_compressed_rle_decodes_strings_written_by_pycocotools():
    # pycocotools.mask.encode of these masks (pycocotools 2.0, recorded once)
    small = np.zeros((6, 5), dtype=bool)
    small[1:4, 1:3] = True
    small[0, 4] = small[5, 4] = True
    assert np.array_equal(coco_masks.decode_rle({"size": [6, 5], "counts": "73305NL0"}, 6, 5), small)
    assert np.array_equal(coco_masks.decode_rle({"size": [6, 5], "counts": b"73305NL0"}, 6, 5), small)
    big = np.zeros((40, 50), dtype=bool)
    big[3:30, 7:45] = True
    big[10:12, 20:40] = False
    string = (r"k8k0=000000000000000000000000\OE;;" + "EE;;" * 19 + "900000000U6")
    assert np.array_equal(coco_masks.decode_rle({"size": [40, 50], "counts": string}, 40, 50), big)
    assert counts_to_string(encode_counts(big)) == string


def test_compressed_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = (int(v) for v in rng.integers(1, 40, size=2))
        kind = trial % 4
        if kind == 0:  # noise: many short runs
            mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        elif kind == 1:  # blobs: long runs, negative deltas
            mask = np.zeros((height, width), dtype=bool)
            for _ in range(3):
                y, x = rng.integers(0, height), rng.integers(0, width)
                mask[y:y + rng.integers(1, 20), x:x + rng.integers(1, 20)] = True
        else:
            mask = np.full((height, width), kind == 2)  # all zero / all one (first run empty)
        counts = encode_counts(mask)
        assert sum(counts) == height * width
        for form in (counts, counts_to_string(counts)):
            decoded = coco_masks.decode_rle({"size": [height, width], "counts": form}, height, width)
            assert np.array_equal(decoded, mask), (trial, form)
    # counts larger than 5 bits, and deltas of both signs
    mask = np.zeros((300, 400), dtype=bool)
    mask[10:290, 50:60] = True
    mask[0:5, 100:300] = True
    string = counts_to_string(encode_counts(mask))
    assert np.array_equal(coco_masks.decode_rle({"size": [300, 400], "counts": string}, 300, 400), mask)


def test_rle_of_another_size_or_wrong_length_is_an_error():
    with pytest.raises(ArtifactError, match=r"size \[4, 3\] differs from the image's \[3, 4\]"):
        coco_masks.decode_rle({"size": [4, 3], "counts": [1, 2, 3, 4, 2]}, 3, 4)
    with pytest.raises(ArtifactError, match="cover 11 pixels"):
        coco_masks.decode_rle({"size": [3, 4], "counts": [1, 2, 3, 4, 1]}, 3, 4)
    with pytest.raises(ArtifactError, match="middle of a count"):
        coco_masks.decode_rle({"size": [3, 4], "counts": "1k"}, 3, 4)


# --- classes, overlap rule, tags ---

def test_category_ids_with_gaps_map_to_labels_in_id_order():
    categories = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                  {"id": 10, "name": "traffic light"}, {"id": 5, "name": "airplane"}]
    label_of, names = coco.category_table(categories)
    assert label_of == {1: 1, 5: 2, 10: 3, 90: 4}
    assert names == ["background", "person", "airplane", "traffic_light", "toothbrush"]
    with pytest.raises(ArtifactError, match="category id 5 is listed twice"):
        coco.category_table(categories + [{"id": 5, "name": "plane"}])
    with pytest.raises(ArtifactError, match="same name 'person'"):
        coco.category_table(categories + [{"id": 7, "name": "person"}])


def _square(x0, y0, x1, y1):
    """The polygon of the pixels x0..x1, y0..y1 (inclusive): pycocotools' rule takes the pixels whose centres
    are inside, so its corners are (x0, y0) and (x1 + 1, y1 + 1)."""
    return [[x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1]]


def test_overlap_rule_smaller_over_larger_and_instances_over_crowd():
    label_of = {3: 1, 7: 2, 9: 3}
    image = {"id": 1, "height": 20, "width": 20}
    crowd = np.zeros((20, 20), dtype=bool)
    crowd[12:20, 0:20] = True  # the bottom rows: a crowd of category 9
    annotations = [
        # the small one first, so that list order would let the large one win
        {"id": 11, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 16.0, "segmentation": _square(4, 4, 7, 7)},
        {"id": 12, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 144.0,
         "segmentation": _square(2, 2, 13, 13)},
        {"id": 13, "image_id": 1, "category_id": 9, "iscrowd": 1, "area": 160.0,
         "segmentation": {"size": [20, 20], "counts": encode_counts(crowd)}},
    ]
    label = coco.rasterise(image, annotations, label_of)
    assert label.dtype == np.uint8 and label.shape == (20, 20)
    assert (label[4:8, 4:8] == 2).all()  # small (category 7) over large
    large = np.zeros((20, 20), dtype=bool)
    large[2:14, 2:14] = True
    large[4:8, 4:8] = False
    assert (label[large] == 1).all()  # large (category 3) also over the crowd, in rows 12..13
    assert (label[12:14, 2:14] == 1).all()
    assert (label[crowd & ~large] == 255).all()  # crowd: ignore where no instance lies
    assert (label[14:20] == 255).all()
    assert (label[0:2] == 0).all() and (label[2:12, 14:20] == 0).all()
    assert coco.image_tags(annotations, label_of) == [0, 1, 2]  # crowd included


def test_rasterise_names_the_annotation_with_an_unknown_category():
    image = {"id": 1, "height": 5, "width": 5}
    annotation = {"id": 77, "image_id": 1, "category_id": 4, "iscrowd": 0, "area": 1,
                  "segmentation": _square(1, 1, 2, 2)}
    with pytest.raises(ArtifactError, match="annotation 77 .*unknown category id 4"):
        coco.rasterise(image, [annotation], {1: 1})


# --- convert_split ---

CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 46, "name": "wine glass"}]


def _make_split(tmp_path, images, annotations, sizes=None, name="instances_train.json", missing=()):
    """An instance file and its JPEGs (sizes: file_name -> (width, height) actually written)."""
    image_dir = tmp_path / "scratch"
    image_dir.mkdir(exist_ok=True)
    for image in images:
        if image["file_name"] in missing:
            continue
        width, height = (sizes or {}).get(image["file_name"], (image["width"], image["height"]))
        Image.new("RGB", (width, height), (image["id"] * 40 % 256, 90, 30)).save(image_dir / image["file_name"])
    annotation_file = tmp_path / name
    annotation_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return annotation_file, image_dir


IMAGES = [
    {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 16, "width": 24},
    {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 20, "width": 12},
    {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "height": 10, "width": 10},  # no annotation
]


def _annotations():
    crowd = np.zeros((20, 12), dtype=bool)
    crowd[15:, :] = True
    return [
        {"id": 1, "image_id": 9, "category_id": 1, "iscrowd": 0, "area": 60.0, "segmentation": _square(0, 0, 9, 5)},
        {"id": 2, "image_id": 9, "category_id": 46, "iscrowd": 0, "area": 4.0, "segmentation": _square(2, 2, 3, 3)},
        {"id": 3, "image_id": 25, "category_id": 18, "iscrowd": 0, "area": 20.0, "segmentation": _square(1, 1, 4, 5)},
        {"id": 4, "image_id": 25, "category_id": 1, "iscrowd": 1, "area": 60.0,
         "segmentation": {"size": [20, 12], "counts": counts_to_string(encode_counts(crowd))}},
    ]


class Bar:
    """What a tqdm-like `progress` factory returns."""

    def __init__(self, total, desc):
        self.total, self.desc, self.count, self.closed = total, desc, 0, False

    def update(self, n):
        self.count += n

    def close(self):
        self.closed = True


def test_convert_split_end_to_end(tmp_path):
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, _annotations())
    root = tmp_path / "coco"
    bars = []

    def progress(**kwargs):
        bars.append(Bar(**kwargs))
        return bars[-1]

    counts = coco.convert_split(annotation_file, image_dir, root, "train", progress=progress)
    assert counts == {"images_listed": 2, "images_left_out": 1, "annotations_used": 4}
    bar, = bars
    assert (bar.total, bar.count, bar.closed) == (2, 2, True) and "train" in bar.desc

    names = ["COCO_train2014_000000000009", "COCO_train2014_000000000025"]
    assert read_name_list(root / "ImageSets/Segmentation/train.txt") == names
    # labels: person (id 1) 1, dog (id 18) 2, wine glass (id 46) 3; tags 0-based
    assert read_class_list(root / "ImageSets/Segmentation/train_cls.txt") == {names[0]: [0, 2], names[1]: [0, 1]}
    assert read_name_list(root / "classes.txt") == ["background", "person", "dog", "wine_glass"]

    first = read_label_png(root / "SegmentationClass" / f"{names[0]}.png", shape=(16, 24))
    expected = np.zeros((16, 24), dtype=np.uint8)
    expected[0:6, 0:10] = 1  # person
    expected[2:4, 2:4] = 3  # the wine glass, smaller, over the person
    assert np.array_equal(first, expected)
    second = read_label_png(root / "SegmentationClass" / f"{names[1]}.png", shape=(20, 12))
    assert (second[15:] == 255).all() and (second[1:6, 1:5] == 2).all()
    assert np.count_nonzero(second == 2) == 20 and np.count_nonzero(second == 0) == 20 * 12 - 20 - 60

    for name in names:  # moved, not copied
        assert (root / "JPEGImages" / f"{name}.jpg").is_file()
        assert not (image_dir / f"{name}.jpg").exists()
    assert (image_dir / "COCO_train2014_000000000030.jpg").exists()  # left out: not moved, not listed
    assert not (root / "JPEGImages" / "COCO_train2014_000000000030.jpg").exists()
    assert not (root / "SegmentationClass" / "COCO_train2014_000000000030.png").exists()

    layout = VOCLayout(root)  # the layout reads it back
    assert layout.names("train") == names and layout.num_foreground == 3
    assert layout.read_image(names[0]).shape == (16, 24, 3)

    # the other split, into the same root, in a process pool: classes.txt must agree
    val_images = [{"id": 3, "file_name": "COCO_val2014_000000000003.jpg", "height": 8, "width": 8}]
    val_annotations = [{"id": 5, "image_id": 3, "category_id": 18, "iscrowd": 0, "area": 4.0,
                        "segmentation": _square(0, 0, 1, 1)}]
    (tmp_path / "val").mkdir()
    val_file, val_dir = _make_split(tmp_path / "val", val_images, val_annotations, name="instances_val.json")
    assert coco.convert_split(val_file, val_dir, root, "val", workers=2)["images_listed"] == 1
    assert read_class_list(root / "ImageSets/Segmentation/val_cls.txt") == {"COCO_val2014_000000000003": [1]}
    assert read_name_list(root / "ImageSets/Segmentation/train.txt") == names


def test_pool_and_serial_conversions_agree(tmp_path):
    images = [{"id": i, "file_name": f"img{i:03d}.jpg", "height": 12, "width": 14} for i in range(1, 9)]
    annotations = [{"id": 100 + i, "image_id": i, "category_id": CATEGORIES[i % 3]["id"], "iscrowd": 0,
                    "area": float(i), "segmentation": _square(i % 5, 1, i % 5 + 3, 6)} for i in range(1, 9)]
    outputs = []
    for workers in (1, 3):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        annotation_file, image_dir = _make_split(folder, images, annotations)
        coco.convert_split(annotation_file, image_dir, folder / "root", "train", workers=workers)
        files = sorted(path for path in (folder / "root").rglob("*") if path.is_file())
        outputs.append({path.relative_to(folder / "root").as_posix(): path.read_bytes() for path in files})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 8 + 8 + 3


def test_classes_of_another_split_must_agree(tmp_path):
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, _annotations())
    root = tmp_path / "coco"
    root.mkdir()
    (root / "classes.txt").write_text("background\nperson\ncat\nwine_glass\n")
    with pytest.raises(ArtifactError, match=r"classes\.txt.*instances_train\.json.*'cat'.*'dog'"):
        coco.convert_split(annotation_file, image_dir, root, "train")


def test_missing_image_file_is_named(tmp_path):
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, _annotations(),
                                             missing={"COCO_train2014_000000000025.jpg"})
    with pytest.raises(ArtifactError, match=r"COCO_train2014_000000000025\.jpg does not exist .*instances_train\.json"):
        coco.convert_split(annotation_file, image_dir, tmp_path / "coco", "train")
    assert (image_dir / "COCO_train2014_000000000009.jpg").exists()  # nothing moved on failure


def test_image_of_another_size_is_named_with_both_sizes(tmp_path):
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, _annotations(),
                                             sizes={"COCO_train2014_000000000009.jpg": (23, 16)})
    with pytest.raises(ArtifactError, match=r"000000000009\.jpg: size 23x16 differs from the 24x16 that .*"
                                            r"instances_train\.json gives"):
        coco.convert_split(annotation_file, image_dir, tmp_path / "coco", "train", workers=2)


def test_annotation_with_unknown_category_or_image_is_named(tmp_path):
    annotations = _annotations()
    annotations[2]["category_id"] = 2
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, annotations)
    with pytest.raises(ArtifactError, match=r"instances_train\.json: annotation 3 names an unknown category id 2"):
        coco.convert_split(annotation_file, image_dir, tmp_path / "coco", "train")
    annotations = _annotations()
    annotations[1]["image_id"] = 12345
    annotation_file, image_dir = _make_split(tmp_path, IMAGES, annotations)
    with pytest.raises(ArtifactError, match="annotation 2 names an unknown image id 12345"):
        coco.convert_split(annotation_file, image_dir, tmp_path / "coco", "train")
