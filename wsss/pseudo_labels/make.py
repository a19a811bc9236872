"""Stage: CAM seeds and dense-CRF pseudo labels (palette PNGs, 255 = ignore), using every core of the job.

Labels are 0 = background and 1 + c for 0-based foreground class c, as in the VOC masks. A shard is a
folder of PNGs with `labels.sha256` (sha256sum's format) listing them; it appears whole (`store.py`
reads shards and gathers them into the label index DeepLab-v2 trains from). A shard also records
its files' sizes and times (`artifacts.record_folder`): a file changed between runs, even with its
list rewritten to match, reruns the shard's job at the next plan (the rule's `check` param).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cams.store import open_hdf5, read_cam_entry
from ..core.artifacts import NEW, ArtifactError, atomic_directory, file_sha256, record_folder, write_lines
from ..core.runtime import map_images
from ..data.voc import IGNORE_INDEX, VOCLayout, open_layout, shard_names, write_label_png
from .crf import dense_crf
from .store import SHARD_LIST


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
    """Saliency-guided pseudo label (EPS/OAA recipe, docs/method.md).

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


def pseudo_label(layout: VOCLayout, name: str, image: np.ndarray, cams: np.ndarray, tags: list[int], settings: dict,
                 crf_settings: dict) -> np.ndarray:
    """The pseudo label of one image in the mode of `settings` (pseudo_labels section; bg_power a number)."""
    if settings["mode"] == "saliency":
        return saliency_label(image, cams, tags, layout.read_saliency(name), settings, crf_settings)
    return crf_label(image, cams, tags, settings, crf_settings)


def with_bg_power(settings: dict, tuning: dict | None) -> dict:
    """The pseudo_labels settings with bg_power 'val' replaced by the value chosen on val (`tuning`)."""
    if settings["bg_power"] != "val":
        return settings
    if tuning is None:
        raise ValueError("pseudo_labels.bg_power is 'val': give the choice made on val (tune_background's output)")
    return {**settings, "bg_power": tuning["bg_power"]}


# --- sharded, multi-process driver -------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(cams_path: str, layout: VOCLayout, settings: dict, crf_settings: dict, out_dir: str) -> None:
    _WORKER.update(handle=open_hdf5(cams_path), layout=layout, settings=settings, crf=crf_settings,
                   out_dir=Path(out_dir))


def _label_one(name: str) -> tuple[str, str]:
    """Make and write one image's pseudo label; return its name and the PNG's sha256."""
    cams, tags = read_cam_entry(_WORKER["handle"], name)
    layout, settings = _WORKER["layout"], _WORKER["settings"]
    image = layout.read_image(name)
    if cams.shape[1:] != image.shape[:2]:
        raise ArtifactError(f"CAMs of {name} in {_WORKER['handle'].filename} are {cams.shape[1:]}, its image "
                            f"{image.shape[:2]}")
    label = pseudo_label(layout, name, image, cams, tags, settings, _WORKER["crf"])
    path = _WORKER["out_dir"] / f"{name}.png"
    write_label_png(path, label, atomic=False)
    return name, file_sha256(path)


def make_pseudo_labels(cams_path: str | Path, dataset: str | Path | VOCLayout, split: str, settings: dict,
                       out_dir: str | Path, shard: int = 0, num_shards: int = 1, workers: int = 1,
                       created_with: str = NEW) -> int:
    """Write the pseudo labels of one shard of a split into `out_dir` (appears whole or not at all), with the
    record of its files that the rule's `check` param compares with (`artifacts.folder_check`), made with
    `created_with`, the param's value."""
    layout = open_layout(dataset)
    names = shard_names(layout.names(split), shard, num_shards)
    with atomic_directory(out_dir) as temporary:
        init_args = (str(cams_path), layout, settings["pseudo_labels"], settings["crf"], str(temporary))
        hashes = dict(map_images(_label_one, names, _init_worker, init_args, workers, f"pseudo labels shard {shard}",
                                 teardown=lambda: _WORKER["handle"].close()))
        write_lines(temporary / SHARD_LIST, [f"{hashes[name]}  {name}.png" for name in names])
        record_folder(temporary, created_with)
    return len(names)
