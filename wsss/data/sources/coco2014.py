"""COCO 2014 assembled from its downloaded archives into one VOC-layout root (`coco.py` converts the annotations).

The archives, by role (config key `dataset.archives`, each naming an entry of `downloads`):

    train_images   train2014.zip                    train2014/COCO_train2014_*.jpg (82,783 images)
    val_images     val2014.zip                      val2014/COCO_val2014_*.jpg (40,504 images)
    annotations    annotations_trainval2014.zip     annotations/instances_{train,val}2014.json
    saliency       saliency maps (optional)         NAME.png anywhere in the archive

The root gets splits `train` and `val` (the images with at least one annotated object: 82,081 and 40,137),
their class masks rasterised from the instances by `coco.py`'s overlap rule, their tags (the categories
annotated) and classes.txt (background and the 80 categories in COCO's id order). An image's name is its file
name without `.jpg` (COCO_train2014_000000000009). Each listed image is decoded whole and checked against the
size its annotation gives, and a listed image's saliency map must decode at its image's size (the index's
checks, made here so that a bad member fails the assembly); an error names the archive and the member.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import assembly
from ...core.artifacts import ArtifactError
from ...core.config import ARCHIVE_ROLES
from ..voc import read_name_list
from .assembly import Workspace, check_saliency_maps, find_folder, take_saliency_maps
from .coco import convert_split

NEEDED_ARCHIVES, OPTIONAL_ARCHIVES = ARCHIVE_ROLES["coco2014"]
SPLITS = {"train": ("train_images", "train2014"), "val": ("val_images", "val2014")}


def assemble(archives: dict[str, str | os.PathLike], root: str | os.PathLike, workers: int = 1,
             progress=None, log=print) -> dict:
    """Build the COCO 2014 root from the archives (roles as in the module docstring); return the counts."""
    return assembly.assemble(_assemble_into, archives, root, "coco2014", NEEDED_ARCHIVES, OPTIONAL_ARCHIVES, workers,
                             progress, log)


def _assemble_into(archives: dict[str, Path], space: Workspace) -> dict:
    root = space.folder
    annotations = find_folder(space.unpack(archives["annotations"], "annotations"), "annotations",
                              archives["annotations"])
    for _, folder_name in SPLITS.values():  # both, before the large image archives are unpacked
        if not (annotations / f"instances_{folder_name}.json").is_file():
            raise ArtifactError(f"{archives['annotations']}: annotations/instances_{folder_name}.json is missing")
    counts = {"splits": {}, "left_out": {}, "annotations_used": {}}
    for split, (role, folder_name) in SPLITS.items():
        annotation_file = annotations / f"instances_{folder_name}.json"
        images = find_folder(space.unpack(archives[role], role), folder_name, archives[role])
        space.log(f"rasterising {annotation_file.name} ({split})")
        converted = convert_split(annotation_file, images, root, split, workers=space.workers,
                                  progress=space.progress, describe=space.member)
        counts["splits"][split] = converted["images_listed"]
        counts["left_out"][split] = converted["images_left_out"]
        counts["annotations_used"][split] = converted["annotations_used"]
    counts["saliency_maps"] = 0
    if "saliency" in archives:
        counts["saliency_maps"] = take_saliency_maps(archives["saliency"], space)
        listed = [read_name_list(root / "ImageSets" / "Segmentation" / f"{split}.txt") for split in SPLITS]
        check_saliency_maps(space, sorted(set().union(*listed)))
    space.log(f"COCO 2014 assembled: {counts}")
    return counts
