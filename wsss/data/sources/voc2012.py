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

Every listed image must exist and decode, every mask (VOC's and SBD's) must have its image's size and class values,
and a listed image's saliency map must decode at its image's size: the index's checks, made here so that a bad
member fails the assembly. An error names the archive and the member (`assembly.Workspace.member`).
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

from . import assembly
from ...core.artifacts import ArtifactError, write_lines
from ...core.config import ARCHIVE_ROLES
from .assembly import (Workspace, check_image, check_mask, check_saliency_maps, find_folder, run_tasks,
                       take_saliency_maps)
from ..voc import VOC_CLASSES, check_label_values, read_name_list, write_class_list, write_label_png

NEEDED_ARCHIVES, OPTIONAL_ARCHIVES = ARCHIVE_ROLES["voc2012"]
SPLITS_WITH_TAGS = ("train_aug", "train", "val")


def read_sbd_mask(path: Path, shown_as: str | None = None) -> np.ndarray:
    """SBD's class mask (`GTcls.Segmentation` in a MATLAB file) as (H, W) uint8 labels; errors name the file as
    `shown_as` (else its path)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    shown_as = shown_as or str(path)
    try:
        record = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        label = np.asarray(record.Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, MatReadError) as error:
        raise ArtifactError(f"{shown_as} is not an SBD class mask (GTcls.Segmentation): {error}") from None
    if label.ndim != 2:
        raise ArtifactError(f"{shown_as}: GTcls.Segmentation has shape {label.shape}, expected a 2-D mask")
    return label


def convert_sbd_mask(task: tuple[str, str, tuple[int, int], str, str]) -> None:
    """One SBD `.mat` mask (path, how errors name it, its image's (height, width), how errors name the image,
    the PNG to write) to a palette PNG, checked against its image's size and the classes."""
    mat_path, shown_as, (height, width), image, png_path = task
    label = read_sbd_mask(Path(mat_path), shown_as)
    if label.shape != (height, width):
        raise ArtifactError(f"{shown_as}: mask size {label.shape[1]}x{label.shape[0]} differs from its image "
                            f"{image} ({width}x{height})")
    check_label_values(label, shown_as, len(VOC_CLASSES))
    write_label_png(png_path, label.astype(np.uint8), atomic=False)


def read_xml_tags(path: Path, shown_as: str | None = None) -> list[int]:
    """0-based foreground classes of the objects in a VOC XML annotation; errors name it as `shown_as` (else its
    path)."""
    shown_as = shown_as or str(path)
    try:
        tree = ElementTree.parse(path)
    except FileNotFoundError:
        raise ArtifactError(f"annotation {shown_as} does not exist: the image's tags come from it") from None
    except ElementTree.ParseError as error:
        raise ArtifactError(f"annotation {shown_as} cannot be parsed: {error}") from None
    classes = set()
    for element in tree.getroot().iter("object"):
        name = (element.findtext("name") or "").strip()
        if name not in VOC_CLASSES[1:]:
            raise ArtifactError(f"annotation {shown_as}: object class {name!r} is not one of VOC's 20 classes")
        classes.add(VOC_CLASSES.index(name) - 1)
    if not classes:
        raise ArtifactError(f"annotation {shown_as} names no object: an image of a training split needs a tag")
    return sorted(classes)


def move_files(source: Path, destination: Path, pattern: str, space: Workspace) -> int:
    """Move the files matching `pattern` from `source` into `destination`; a name already there is an error
    (two archives must not disagree about one image)."""
    destination.mkdir(parents=True, exist_ok=True)
    moved = 0
    for path in sorted(source.glob(pattern)):
        target = destination / path.name
        if target.exists():
            raise ArtifactError(f"{path.name} comes from two archives ({space.member(target)} and "
                                f"{space.member(path)}); refusing to choose")
        space.move(path, target)
        moved += 1
    return moved


def check_listed_images(root: Path, names: list[str], list_file: str) -> None:
    """Every image `list_file` (as errors name it) lists is in JPEGImages/."""
    for name in names:
        if not (root / "JPEGImages" / f"{name}.jpg").is_file():
            raise ArtifactError(f"{list_file} names {name}, but no image {name}.jpg is in the archives")


def assemble(archives: dict[str, str | os.PathLike], root: str | os.PathLike, workers: int = 1,
             progress=None, log=print) -> dict:
    """Build the VOC 2012 + SBD root from the archives (roles as in the module docstring); return the counts."""
    return assembly.assemble(_assemble_into, archives, root, "voc2012", NEEDED_ARCHIVES, OPTIONAL_ARCHIVES, workers,
                             progress, log)


def _take_trainval(archive: Path, space: Workspace) -> dict[str, list[str]]:
    """VOC's images, masks and annotations into the root; its train and val lists, checked."""
    root = space.folder
    voc = find_folder(space.unpack(archive, "trainval"), "VOC2012", archive)
    for folder in ("JPEGImages", "SegmentationClass", "Annotations"):
        if not (voc / folder).is_dir():
            raise ArtifactError(f"{archive}: VOC2012/{folder}/ is missing")
        space.move(voc / folder, root / folder)
    splits = {}
    for split in ("train", "val"):
        list_file = space.member(voc / "ImageSets" / "Segmentation" / f"{split}.txt")
        splits[split] = read_name_list(voc / "ImageSets" / "Segmentation" / f"{split}.txt", list_file)
        check_listed_images(root, splits[split], list_file)
        for name in splits[split]:
            if not (root / "SegmentationClass" / f"{name}.png").is_file():
                raise ArtifactError(f"{list_file} names {name}, but SegmentationClass/{name}.png is missing")
    return splits


def _take_test(archive: Path, space: Workspace) -> list[str]:
    """The test images beside the others; the test list, checked."""
    test = find_folder(space.unpack(archive, "test"), "VOC2012", archive)
    move_files(test / "JPEGImages", space.folder / "JPEGImages", "*.jpg", space)
    list_file = test / "ImageSets" / "Segmentation" / "test.txt"
    names = read_name_list(list_file, space.member(list_file))
    check_listed_images(space.folder, names, space.member(list_file))
    return names


def _take_sbd_images(archive: Path, space: Workspace) -> tuple[Path, dict[str, list[str]], int]:
    """SBD's folder, its train and val lists (checked) and how many of its images VOC lacked (taken from SBD)."""
    root = space.folder
    sbd = find_folder(space.unpack(archive, "sbd"), "dataset", archive)
    lists = {split: read_name_list(sbd / f"{split}.txt", space.member(sbd / f"{split}.txt"))
             for split in ("train", "val")}
    added = 0
    for name in sorted(set(lists["train"]) | set(lists["val"])):  # SBD's images are VOC's; one VOC lacks is SBD's
        if not (root / "JPEGImages" / f"{name}.jpg").exists() and (sbd / "img" / f"{name}.jpg").is_file():
            space.move(sbd / "img" / f"{name}.jpg", root / "JPEGImages" / f"{name}.jpg")
            added += 1
    for split, names in lists.items():
        check_listed_images(root, names, space.member(sbd / f"{split}.txt"))
    return sbd, lists, added


def _check_images(names: list[str], space: Workspace) -> dict[str, tuple[int, int]]:
    """Every listed image decoded, as the index will; their (height, width)."""
    paths = [space.folder / "JPEGImages" / f"{name}.jpg" for name in names]
    shapes = run_tasks(check_image, [(str(path), space.member(path)) for path in paths], space.workers,
                       space.progress, "images")
    return dict(zip(names, shapes))


def _assemble_into(archives: dict[str, Path], space: Workspace) -> dict:
    root = space.folder
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    splits = _take_trainval(archives["trainval"], space)
    if "test" in archives:
        splits["test"] = _take_test(archives["test"], space)
    sbd, sbd_lists, added = _take_sbd_images(archives["sbd"], space)
    sbd_names = sorted(set(sbd_lists["train"]) | set(sbd_lists["val"]))
    shapes = _check_images(sorted(set(sbd_names).union(*splits.values())), space)

    def image(name):
        return space.member(root / "JPEGImages" / f"{name}.jpg")

    voc_masks = [root / "SegmentationClass" / f"{name}.png" for name in splits["train"] + splits["val"]]
    run_tasks(check_mask, [(str(path), space.member(path), shapes[path.stem], image(path.stem), len(VOC_CLASSES))
                           for path in voc_masks], space.workers, space.progress, "VOC masks")
    aug = root / "SegmentationClassAug"
    aug.mkdir()
    tasks = []
    for name in sbd_names:
        mat = sbd / "cls" / f"{name}.mat"
        if not mat.is_file():
            raise ArtifactError(f"{archives['sbd']}: SBD lists {name}, but cls/{name}.mat is missing")
        tasks.append((str(mat), space.member(mat), shapes[name], image(name), str(aug / f"{name}.png")))
    run_tasks(convert_sbd_mask, tasks, space.workers, space.progress, "SBD masks")
    for name in splits["train"] + splits["val"]:  # VOC's own, finer mask wins
        shutil.copyfile(root / "SegmentationClass" / f"{name}.png", aug / f"{name}.png")

    splits["train_aug"] = sorted((set(sbd_names) | set(splits["train"])) - set(splits["val"]))
    for split, names in splits.items():
        write_lines(sets / f"{split}.txt", names)
    for split in SPLITS_WITH_TAGS:
        tags = {}
        for name in splits[split]:
            xml = root / "Annotations" / f"{name}.xml"
            tags[name] = read_xml_tags(xml, space.member(xml))
        write_class_list(sets / f"{split}_cls.txt", tags)
    saliency = 0
    if "saliency" in archives:
        saliency = take_saliency_maps(archives["saliency"], space)
        check_saliency_maps(space, sorted(shapes))
    counts = {"splits": {split: len(names) for split, names in splits.items()}, "sbd_masks": len(tasks),
              "images_from_sbd": added, "saliency_maps": saliency}
    space.log(f"VOC 2012 assembled: {counts}")
    return counts
