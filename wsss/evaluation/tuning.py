"""Stage: the choices behind the CAM seeds and the pseudo labels, made on the val split and nowhere else.

- The background threshold of the seeds: the value of `cam.bg_thresholds` whose seeds score best on the
  val split's masks. `evaluate_cams` then scores the train split's seeds at it.
- With `pseudo_labels.bg_power: val`, the power of the dense-CRF background score: the value of
  `pseudo_labels.bg_powers` whose pseudo labels (made as for the train split, CRF included) score best on
  the val split's masks. A fixed bg_power is recorded as chosen in the config.

The val split's CAMs come from the experiment's final classifier. The result names every image it read,
so a test can check that no image of a held-out split reached a choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cams.store import open_hdf5, read_cam_entry
from ..core.runtime import map_images
from ..data.voc import VOCLayout, open_layout
from ..pseudo_labels.make import pseudo_label
from .evaluate import seed_sweep, sweep_points
from .metrics import confusion_matrix, summarise

_WORKER: dict = {}


def _init_worker(cams_path: str, layout: VOCLayout, split: str, settings: dict, crf_settings: dict,
                 powers: list[float]) -> None:
    _WORKER.update(handle=open_hdf5(cams_path), layout=layout, split=split, settings=settings, crf=crf_settings,
                   powers=powers)


def _confusions_of_image(name: str) -> np.ndarray:
    """One confusion matrix per candidate bg_power for one image's pseudo label."""
    layout, split = _WORKER["layout"], _WORKER["split"]
    cams, tags = read_cam_entry(_WORKER["handle"], name)
    image, truth = layout.read_image(name), layout.read_mask(name, split)
    num_classes = len(layout.class_names)
    return np.stack([
        confusion_matrix(truth, pseudo_label(layout, name, image, cams, tags, {**_WORKER["settings"], "bg_power": power},
                                             _WORKER["crf"]), num_classes)
        for power in _WORKER["powers"]])


def bg_power_sweep(cams_path: str | Path, dataset: str | Path | VOCLayout, split: str, settings: dict,
                   crf_settings: dict, powers: list[float], workers: int = 1) -> list[dict]:
    """Pseudo-label mIoU on `split`'s masks for every candidate bg_power, [{"bg_power", "miou"}]."""
    layout = open_layout(dataset)
    names = layout.names(split)
    init_args = (str(cams_path), layout, split, settings, crf_settings, list(powers))
    total = sum(map_images(_confusions_of_image, names, _init_worker, init_args, workers, f"bg_power sweep on {split}",
                           teardown=lambda: _WORKER["handle"].close()))
    return [{"bg_power": power, "miou": summarise(confusion, layout.class_names)["miou"]}
            for power, confusion in zip(powers, total)]


def _best(sweep: list[dict], key: str) -> float:
    """The swept value with the highest mIoU (the first of equals, in the order given)."""
    return max(sweep, key=lambda point: point["miou"])[key]


def tune_background(cams_path: str | Path, dataset: str | Path | VOCLayout, split: str, settings: dict,
                    workers: int = 1) -> dict:
    """The background threshold and bg_power chosen on `split` (the val split); `settings` has the cam,
    pseudo_labels and crf sections."""
    layout = open_layout(dataset)
    thresholds = settings["cam"]["bg_thresholds"]
    names, confusions = seed_sweep(cams_path, layout, split, thresholds)
    threshold_sweep = sweep_points(thresholds, confusions, layout.class_names)
    labels = settings["pseudo_labels"]
    power_sweep = []
    if labels["bg_power"] == "val":
        power_sweep = bg_power_sweep(cams_path, layout, split, labels, settings["crf"], labels["bg_powers"], workers)
    return {"split": split, "num_images": len(names), "images": names,
            "bg_threshold": _best(threshold_sweep, "threshold"), "threshold_sweep": threshold_sweep,
            "bg_power": _best(power_sweep, "bg_power") if power_sweep else labels["bg_power"],
            "bg_power_chosen_on": split if power_sweep else "config", "bg_power_sweep": power_sweep}
