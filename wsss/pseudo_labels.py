"""Stage: CAM seeds and dense-CRF pseudo labels (palette PNGs, 255 = ignore), using every core of the job.

Labels are 0 = background and 1 + c for 0-based foreground class c, as in the VOC masks.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import h5py
import numpy as np

from .cam_store import read_cam_entry
from .crf import dense_crf
from .runtime import progress
from .data.voc import IGNORE_INDEX, VOCLayout, atomic_path, read_grey, read_image, shard_names, write_label_png, write_lines


def label_of_channels(tags: list[int]) -> np.ndarray:
    """Channel index -> label value for channels [background, tag_0, tag_1, ...]."""
    return np.asarray([0, *[tag + 1 for tag in tags]], dtype=np.uint8)


def seed_label(cams: np.ndarray, tags: list[int], bg_threshold: float) -> np.ndarray:
    """CAM seed: argmax over [constant background threshold, CAM of each tag]."""
    height, width = cams.shape[1:]
    scores = np.concatenate([np.full((1, height, width), bg_threshold, np.float32), cams])
    return label_of_channels(tags)[scores.argmax(0)]


def crf_posterior(image: np.ndarray, cams: np.ndarray, settings: dict, crf_settings: dict) -> np.ndarray:
    """CRF posteriors of [background, tags...] with background score (1 - max CAM)^bg_power."""
    background = (1.0 - cams.max(0, keepdims=True)) ** settings["bg_power"]
    return dense_crf(image, np.concatenate([background, cams]), crf_settings)


def crf_label(image: np.ndarray, cams: np.ndarray, tags: list[int], settings: dict, crf_settings: dict) -> np.ndarray:
    """CRF pseudo label: background score (1 - max CAM)^bg_power, CRF, argmax, low confidence -> 255."""
    if not tags:
        return np.zeros(image.shape[:2], np.uint8)
    posterior = crf_posterior(image, cams, settings, crf_settings)
    label = label_of_channels(tags)[posterior.argmax(0)]
    if settings["min_confidence"] > 0:
        label[posterior.max(0) < settings["min_confidence"]] = IGNORE_INDEX
    return label


def saliency_label(image: np.ndarray, cams: np.ndarray, tags: list[int], saliency: np.ndarray, settings: dict,
                   crf_settings: dict) -> np.ndarray:
    """Saliency-guided pseudo label (EPS/OAA recipe, method.md).

    Background score 1 - saliency/255, class scores the CRF posteriors of the CAMs; a pixel where more
    than one channel exceeds 0.9 is ambiguous (255); background pixels that are salient or claimed by
    the CRF (max(saliency, 255 [CRF > 0.8]) >= 32) are uncertain (255); an image with < 1 % foreground
    is ignored whole.
    """
    height, width = image.shape[:2]
    if not tags:
        return np.zeros((height, width), np.uint8)
    class_posterior = crf_posterior(image, cams, settings, crf_settings)[1:]
    saliency = saliency.astype(np.float32)
    scores = np.concatenate([(1.0 - saliency / 255.0)[None], class_posterior])
    label = label_of_channels(tags)[scores.argmax(0)]
    label[(scores > 0.9).sum(0) > 1] = IGNORE_INDEX
    claimed = np.maximum(saliency, 255.0 * (class_posterior.max(0) > 0.8))
    label[(label == 0) & (claimed >= 32)] = IGNORE_INDEX
    foreground = (label != 0) & (label != IGNORE_INDEX)
    if foreground.mean() < 0.01:
        label[:] = IGNORE_INDEX
    return label


# --- sharded, multi-process driver -------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(cams_path: str, dataset_root: str, settings: dict, crf_settings: dict, out_dir: str) -> None:
    _WORKER.update(handle=h5py.File(cams_path, "r"), layout=VOCLayout(dataset_root), settings=settings,
                   crf=crf_settings, out_dir=Path(out_dir))


def _label_one(name: str) -> str:
    cams, tags = read_cam_entry(_WORKER["handle"], name)
    layout, settings = _WORKER["layout"], _WORKER["settings"]
    image = read_image(layout.image_path(name))
    if cams.shape[1:] != image.shape[:2]:
        raise ValueError(f"CAMs of {name} are {cams.shape[1:]}, its image {image.shape[:2]}")
    if settings["mode"] == "saliency":
        saliency_path = layout.saliency_path(name)
        if not saliency_path.exists():
            raise FileNotFoundError(f"pseudo_labels.mode is 'saliency' but {saliency_path} does not exist")
        label = saliency_label(image, cams, tags, read_grey(saliency_path), settings, _WORKER["crf"])
    else:
        label = crf_label(image, cams, tags, settings, _WORKER["crf"])
    path = _WORKER["out_dir"] / f"{name}.png"
    write_label_png(path, label)
    return name


def make_pseudo_labels(cams_path: str | Path, dataset_root: str | Path, split: str, settings: dict,
                       out_dir: str | Path, shard: int = 0, num_shards: int = 1, workers: int = 1) -> int:
    """Write the pseudo labels of one shard of a split into `out_dir` (appears whole or not at all)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists already; remove it to recompute")
    names = shard_names(VOCLayout(dataset_root).names(split), shard, num_shards)
    tmp_dir = atomic_path(out_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    init_args = (str(cams_path), str(dataset_root), settings["pseudo_labels"], settings["crf"], str(tmp_dir))
    if workers > 1:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
            for _ in progress(pool.imap_unordered(_label_one, names, chunksize=4), total=len(names),
                              desc=f"pseudo labels shard {shard}"):
                pass
    else:
        _init_worker(*init_args)
        for name in progress(names, desc=f"pseudo labels shard {shard}"):
            _label_one(name)
        _WORKER["handle"].close()
    os.replace(tmp_dir, out_dir)
    return len(names)


def write_index(label_paths: dict[str, Path], out_path: str | Path) -> int:
    """Write a label index: "NAME path/to/label.png" a line, paths relative to the index."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_lines(out_path, [f"{name} {os.path.relpath(Path(path).resolve(), out_path.parent.resolve())}"
                           for name, path in label_paths.items()])
    return len(label_paths)


def write_label_index(shard_dirs: list[str | Path], out_path: str | Path) -> int:
    """Gather the pseudo-label shard directories into one index."""
    return write_index({png.stem: png for shard_dir in shard_dirs for png in sorted(Path(shard_dir).glob("*.png"))},
                       out_path)


def read_label_index(path: str | Path) -> dict[str, Path]:
    """{name: label PNG path} from an index written by `write_label_index`."""
    path = Path(path)
    index = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{line_number}: expected 'NAME PATH', got {line.strip()!r}")
            index[fields[0]] = path.parent / fields[1]
    return index
