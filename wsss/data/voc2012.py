"""PASCAL VOC 2012 with SBD's masks (train_aug), assembled from the downloaded archives into one VOC-layout root.

The archives, by role (config key `dataset.archives`, each naming an entry of `downloads`):

    trainval   VOCtrainval_11-May-2012.tar   VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, Annotations,
                                             ImageSets/Segmentation/{train,val}.txt}
    sbd        benchmark.tgz                 benchmark_RELEASE/dataset/{cls/NAME.mat, img/NAME.jpg, train.txt, val.txt}
    test       VOC2012test.tar (optional)    VOCdevkit/VOC2012/{JPEGImages, ImageSets/Segmentation/test.txt}
    saliency   saliency maps (optional)      NAME.png anywhere in the archive (grey levels 0..255)

What `assemble` writes (the layout of `voc.py`):

- `JPEGImages/`: VOC's images, the test images beside them, and any SBD image VOC lacks.
- `SegmentationClass/`: VOC's own masks (train and val, 255 on object boundaries).
- `SegmentationClassAug/`: SBD's masks converted to palette PNGs, then VOC's own mask written over an image
  that has both (VOC's is the finer annotation), as the usual SegmentationClassAug folder has it.
- `ImageSets/Segmentation/`: `train`, `val` (VOC), `test`, and `train_aug` = (SBD train + SBD val + VOC train)
  minus VOC val, sorted: 10,582 images for the real archives. `SPLIT_cls.txt` for train_aug, train and val:
  the image-level tags, read from VOC's XML annotations (every object's class, `difficult` ones included), the
  weak labels the WSSS papers train with; never from the masks.
- `saliency/`: the maps, by file name.
- `prepared.json`: the counts and which archive gave what.

Every listed image must exist and every converted mask must have its image's size; an error names the file.
The root appears as a whole only when all of it is written (a failed run leaves nothing a rerun would take as
done), and the archives' contents are unpacked into scratch folders inside it, refused member by member if
they would land outside (`download.extract_into`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from ..artifacts import ArtifactError, write_lines
from ..config import ARCHIVE_ROLES
from . import assembly
from .assembly import find_folder, run_tasks, take_saliency_maps, unpack
from .voc import VOC_CLASSES, check_label_values, read_name_list, write_class_list, write_label_png

NEEDED_ARCHIVES, OPTIONAL_ARCHIVES = ARCHIVE_ROLES["voc2012"]
SPLITS_WITH_TAGS = ("train_aug", "train", "val")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the image's header; an error names the file."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise ArtifactError(f"{path} does not exist") from None
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path} cannot be read: {error}") from None


def read_sbd_mask(path: Path) -> np.ndarray:
    """SBD's class mask (`GTcls.Segmentation` in a MATLAB file) as (H, W) uint8 labels."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        record = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        label = np.asarray(record.Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, MatReadError) as error:
        raise ArtifactError(f"{path} is not an SBD class mask (GTcls.Segmentation): {error}") from None
    if label.ndim != 2:
        raise ArtifactError(f"{path}: GTcls.Segmentation has shape {label.shape}, expected a 2-D mask")
    return label


def convert_sbd_mask(task: tuple[str, str, str]) -> None:
    """One SBD `.mat` mask to a palette PNG, checked against its image's size and the classes."""
    mat_path, image_path, png_path = map(Path, task)
    label = read_sbd_mask(mat_path)
    height, width = image_size(image_path)
    if label.shape != (height, width):
        raise ArtifactError(f"{mat_path}: mask size {label.shape[1]}x{label.shape[0]} differs from its image "
                            f"{image_path} ({width}x{height})")
    check_label_values(label, mat_path, len(VOC_CLASSES))
    write_label_png(png_path, label.astype(np.uint8), atomic=False)


def read_xml_tags(path: Path) -> list[int]:
    """0-based foreground classes of the objects in a VOC XML annotation."""
    try:
        tree = ElementTree.parse(path)
    except FileNotFoundError:
        raise ArtifactError(f"annotation {path} does not exist: the image's tags come from it") from None
    except ElementTree.ParseError as error:
        raise ArtifactError(f"annotation {path} cannot be parsed: {error}") from None
    classes = set()
    for element in tree.getroot().iter("object"):
        name = (element.findtext("name") or "").strip()
        if name not in VOC_CLASSES[1:]:
            raise ArtifactError(f"annotation {path}: object class {name!r} is not one of VOC's 20 classes")
        classes.add(VOC_CLASSES.index(name) - 1)
    if not classes:
        raise ArtifactError(f"annotation {path} names no object: an image of a training split needs a tag")
    return sorted(classes)


def move_files(source: Path, destination: Path, pattern: str) -> int:
    """Move the files matching `pattern` from `source` into `destination`; a name already there is an error
    (two archives must not disagree about one image)."""
    destination.mkdir(parents=True, exist_ok=True)
    moved = 0
    for path in sorted(source.glob(pattern)):
        target = destination / path.name
        if target.exists():
            raise ArtifactError(f"{path.name} comes from two archives ({path} and an earlier one); refusing to "
                                f"choose")
        os.replace(path, target)
        moved += 1
    return moved


def check_listed_images(root: Path, names: list[str], list_file: Path) -> None:
    for name in names:
        if not (root / "JPEGImages" / f"{name}.jpg").is_file():
            raise ArtifactError(f"{list_file} names {name}, but no image {name}.jpg is in the archives")


def assemble(archives: dict[str, str | os.PathLike], root: str | os.PathLike, workers: int = 1,
             progress=None, log=print) -> dict:
    """Build the VOC 2012 + SBD root from the archives (roles as in the module docstring); return the counts."""
    return assembly.assemble(_assemble_into, archives, root, "voc2012", NEEDED_ARCHIVES, OPTIONAL_ARCHIVES, workers,
                             progress, log)


def _assemble_into(archives: dict[str, Path], root: Path, workers: int, progress, log) -> dict:
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    voc = find_folder(unpack(archives["trainval"], root, "trainval", log), "VOC2012", archives["trainval"])
    for folder in ("JPEGImages", "SegmentationClass", "Annotations"):
        if not (voc / folder).is_dir():
            raise ArtifactError(f"{archives['trainval']}: VOC2012/{folder}/ is missing")
        os.replace(voc / folder, root / folder)
    splits = {}
    for split in ("train", "val"):
        list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        splits[split] = read_name_list(list_file)
        check_listed_images(root, splits[split], list_file)
        for name in splits[split]:
            if not (root / "SegmentationClass" / f"{name}.png").is_file():
                raise ArtifactError(f"{list_file} names {name}, but SegmentationClass/{name}.png is missing")

    if "test" in archives:
        test = find_folder(unpack(archives["test"], root, "test", log), "VOC2012", archives["test"])
        move_files(test / "JPEGImages", root / "JPEGImages", "*.jpg")
        list_file = test / "ImageSets" / "Segmentation" / "test.txt"
        splits["test"] = read_name_list(list_file)
        check_listed_images(root, splits["test"], list_file)

    sbd = find_folder(unpack(archives["sbd"], root, "sbd", log), "dataset", archives["sbd"])
    sbd_lists = {split: read_name_list(sbd / f"{split}.txt") for split in ("train", "val")}
    sbd_names = sorted(set(sbd_lists["train"]) | set(sbd_lists["val"]))
    added = 0
    for name in sbd_names:  # SBD's images are VOC's; one VOC lacks is taken from SBD
        if not (root / "JPEGImages" / f"{name}.jpg").exists() and (sbd / "img" / f"{name}.jpg").is_file():
            os.replace(sbd / "img" / f"{name}.jpg", root / "JPEGImages" / f"{name}.jpg")
            added += 1
    for split, names in sbd_lists.items():
        check_listed_images(root, names, sbd / f"{split}.txt")
    aug = root / "SegmentationClassAug"
    aug.mkdir()
    tasks = []
    for name in sbd_names:
        mat = sbd / "cls" / f"{name}.mat"
        if not mat.is_file():
            raise ArtifactError(f"{archives['sbd']}: SBD lists {name}, but cls/{name}.mat is missing")
        tasks.append((str(mat), str(root / "JPEGImages" / f"{name}.jpg"), str(aug / f"{name}.png")))
    run_tasks(convert_sbd_mask, tasks, workers, progress, "SBD masks")
    for name in splits["train"] + splits["val"]:  # VOC's own, finer mask wins
        shutil.copyfile(root / "SegmentationClass" / f"{name}.png", aug / f"{name}.png")

    splits["train_aug"] = sorted((set(sbd_names) | set(splits["train"])) - set(splits["val"]))
    for split, names in splits.items():
        write_lines(sets / f"{split}.txt", names)
    for split in SPLITS_WITH_TAGS:
        write_class_list(sets / f"{split}_cls.txt",
                         {name: read_xml_tags(root / "Annotations" / f"{name}.xml") for name in splits[split]})
    saliency = take_saliency_maps(archives["saliency"], root, log) if "saliency" in archives else 0
    counts = {"splits": {split: len(names) for split, names in splits.items()}, "sbd_masks": len(tasks),
              "images_from_sbd": added, "saliency_maps": saliency}
    log(f"VOC 2012 assembled: {counts}")
    return counts
