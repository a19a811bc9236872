"""The gate: whether a built-in dataset gives RCA something to fix, measured from the plain CAM baseline alone.

RCA's regional semantics can only help where the baseline's CAMs find an object's discriminative part (its
marking) and miss the rest (its body), where the dense CRF does not fill the body in by itself, and where the
body's features do carry the class, so that regions of the same class can pull them together. On the val split,
from the files of experiment `cam` (its val CAMs and the choices tune_background made on them), the val split's
masks and parts/, and the pretrained backbone:

1. the seeds' body and marking recall, over all objects and over large ones, at the background threshold where
   the seeds' background false-positive rate on val is `background_fpr` (`mechanism.seed_measures`);
2. the body recall of the val split's pseudo labels (dense CRF at the bg_power tune_background chose);
3. a linear probe: each object's body-pooled backbone feature (`body_features`), a ridge classifier trained on the
   train split's objects and scored on val's, beside chance (always answering the train objects' most frequent
   class).

`bench/gate.py` runs it over run folders and prints the verdicts (`GATE`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cams.store import open_hdf5, read_cam_entry
from ..core.artifacts import ArtifactError, load_torch
from ..core.config import load_config
from ..core.rules import split_roles
from ..core.runtime import progress
from ..data.datasets import image_sizes, normalize, size_grouped_batches, to_tensor
from ..data.parts import decode_parts
from ..data.voc import VOCLayout, open_layout
from ..models.backbones import build_vgg
from ..pseudo_labels.make import pseudo_label, with_bg_power
from .mechanism import LARGE_OBJECT_SHARE, label_measures, object_class, read_parts_map, seed_measures

BASELINE = "cam"  # the only experiment whose files the gate reads
BACKGROUND_FPR = 0.15

# criterion: (figure, "max" or "min", bound); the probe's bound is relative to chance (`probe_passes`)
GATE = {
    "large-object body recall of the seeds": ("seed_large_body_recall", "max", 0.5),
    "marking recall of the seeds": ("seed_marking_recall", "min", 0.9),
    "body recall after the CRF": ("crf_body_recall", "max", 0.8),
}
PROBE_CRITERION = "probe accuracy well above chance"
PROBE_MARGIN = 0.5  # "well above": at least halfway from chance to a perfect probe


def run_config(run: str | Path, config_path: str | Path | None = None) -> dict:
    """The configuration a run resolved (its results/config.yaml, or `config_path`), every default filled in."""
    path = Path(config_path) if config_path else Path(run) / "results" / "config.yaml"
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: the gate reads the run's resolved configuration (written at the "
                            f"end of a run) or the one given with --config")
    return load_config(path)


def baseline_files(run: str | Path, config: dict) -> dict[str, Path]:
    """Every file the gate reads besides the dataset: the baseline's val CAMs and tuning, the pretrained backbone;
    and the dataset's root and manifest. Nothing of another experiment."""
    run = Path(run)
    results = run / "results" / config["dataset"]["name"]
    return {"val_cams": results / BASELINE / "tuning" / "cams_val.h5",
            "tuning": results / BASELINE / "tuning" / "background.json",
            "backbone": results / "pretrain" / "backbone.pt",
            "dataset": run / config["dataset"]["root"],
            "manifest": results / "dataset" / "manifest.json"}


def open_run_dataset(files: dict[str, Path]) -> VOCLayout:
    """The run's dataset, its files checked against the manifest where the run indexed it."""
    return open_layout(files["dataset"], files["manifest"] if files["manifest"].is_file() else None)


def seed_figures(files: dict[str, Path], layout: VOCLayout, val_split: str, background_fpr: float,
                 large_share: float) -> dict:
    """The val seeds' part recalls at the threshold where their background false-positive rate on val is
    `background_fpr`."""
    measures = seed_measures(files["val_cams"], files["val_cams"], layout, val_split, val_split,
                             {"background_fpr": background_fpr, "large_object_area": large_share})
    return {"seed_threshold": measures["threshold"], "seed_background_fpr": measures["background_fpr"],
            **{f"seed_{part}": measures[part] for part in
               ("body_recall", "marking_recall", "large_body_recall", "large_marking_recall")}}


def crf_figures(files: dict[str, Path], layout: VOCLayout, val_split: str, config: dict, large_share: float) -> dict:
    """The part recalls of the val split's pseudo labels, made as the baseline's are (its mode, the bg_power its
    tuning chose, the config's CRF)."""
    tuning = json.loads(files["tuning"].read_text())
    settings = with_bg_power(config["pseudo_labels"], tuning)
    with open_hdf5(files["val_cams"]) as handle:
        def pseudo_label_of(name, truth):
            cams, tags = read_cam_entry(handle, name)
            return pseudo_label(layout, name, layout.read_image(name), cams.astype(np.float32), tags, settings,
                                config["crf"])

        measures = label_measures(pseudo_label_of, layout, val_split, large_share)
    return {"crf_bg_power": settings["bg_power"], "crf_background_fpr": measures["background_fpr"],
            **{f"crf_{part}": measures[part] for part in ("body_recall", "marking_recall", "large_body_recall")}}


def load_backbone(files: dict[str, Path], config: dict, device: torch.device) -> torch.nn.Module:
    """The pretrained backbone (the network of the config's classifier section), in eval mode."""
    backbone = build_vgg({**config["classifier"]["backbone"], "weights": None})
    backbone.load_state_dict(load_torch(files["backbone"], "pretrained backbone"))
    return backbone.to(device).eval()


def object_body_weights(truth: np.ndarray, parts: np.ndarray, size: tuple[int, int]) -> list[tuple[int, torch.Tensor]]:
    """(class, (h, w) weights) of each object with a visible body: the share of each feature cell's pixels on the
    object's body (its parts value 2k - 1), i.e. the body mask downsampled to the feature map by area."""
    instances, marking = decode_parts(parts)
    objects = []
    for instance_id in np.unique(instances[instances > 0]):
        instance = instances == instance_id
        body = torch.from_numpy((instance & ~marking).astype(np.float32))
        if body.sum() == 0:
            continue
        objects.append((object_class(truth, instance) - 1,
                        F.adaptive_avg_pool2d(body[None, None], size)[0, 0]))
    return objects


@torch.no_grad()
def body_features(backbone: torch.nn.Module, layout: VOCLayout, split: str, device: torch.device,
                  batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features and (N,) classes of every object with a visible body in a split's images: the backbone's
    feature map (the whole image, as the CAMs see it) averaged over the object's body cells, weighted by
    `object_body_weights`."""
    names = layout.names(split)
    features, classes = [], []
    for batch in progress(size_grouped_batches(image_sizes(layout, names), batch_size), desc=f"body features of {split}"):
        images = torch.stack([normalize(to_tensor(layout.read_image(names[index]))) for index in batch])
        feature_maps = backbone(images.to(device)).float().cpu()  # (B, D, h, w)
        for index, feature_map in zip(batch, feature_maps):
            truth, parts = layout.read_mask(names[index], split), read_parts_map(layout, names[index])
            objects = object_body_weights(truth, parts, tuple(feature_map.shape[1:]))
            if objects:
                weights = torch.stack([object_weights for _, object_weights in objects]).flatten(1)  # (K, hw)
                features.append((weights @ feature_map.flatten(1).T) / weights.sum(1, keepdim=True))
                classes += [cls for cls, _ in objects]
    if not features:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(features).numpy(), np.asarray(classes, np.int64)


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, num_classes: int,
                alpha: float = 1.0) -> np.ndarray:
    """Val predictions of a ridge classifier (one-hot targets, features standardised on train, closed form)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6

    def design(x):
        return np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1).astype(np.float64)

    x = design(train_x)
    targets = np.eye(num_classes)[train_y]
    penalty = alpha * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.linalg.solve(x.T @ x + penalty, x.T @ targets)
    return (design(val_x) @ weights).argmax(1)


def probe_figures(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                  num_classes: int) -> dict:
    """The probe's val accuracy and chance: the share of val objects of the train objects' most frequent class."""
    if len(train_y) == 0 or len(val_y) == 0:
        raise ArtifactError("the probe has no objects to train or score on (no visible body in a split)")
    majority = np.bincount(train_y, minlength=num_classes).argmax()
    predictions = ridge_probe(train_x, train_y, val_x, num_classes)
    return {"probe_accuracy": float((predictions == val_y).mean()), "probe_chance": float((val_y == majority).mean()),
            "probe_train_objects": int(len(train_y)), "probe_val_objects": int(len(val_y))}


def measure_gate(run: str | Path, config_path: str | Path | None = None, background_fpr: float = BACKGROUND_FPR,
                 large_share: float = LARGE_OBJECT_SHARE, device: str = "cpu") -> dict:
    """Every figure of the gate for one run folder (see the module's docstring)."""
    config = run_config(run, config_path)
    files = baseline_files(run, config)
    missing = [str(path) for path in files.values() if not path.exists() and path != files["manifest"]]
    if missing:
        raise ArtifactError(f"the gate needs the baseline's files, missing: {', '.join(missing)}")
    layout = open_run_dataset(files)
    roles = split_roles(config)
    figures = {**seed_figures(files, layout, roles["val"], background_fpr, large_share),
               **crf_figures(files, layout, roles["val"], config, large_share)}
    torch_device = torch.device(device)
    backbone = load_backbone(files, config, torch_device)
    train_x, train_y = body_features(backbone, layout, roles["train"], torch_device)
    val_x, val_y = body_features(backbone, layout, roles["val"], torch_device)
    return {**figures, **probe_figures(train_x, train_y, val_x, val_y, layout.num_foreground)}


def probe_passes(figures: dict) -> bool:
    chance = figures["probe_chance"]
    return figures["probe_accuracy"] >= chance + PROBE_MARGIN * (1.0 - chance)


def verdicts(figures: dict) -> dict[str, bool | None]:
    """Pass (True) or fail of each criterion of the gate; None where a figure is missing (no large object)."""
    result = {}
    for criterion, (figure, kind, bound) in GATE.items():
        value = figures.get(figure)
        result[criterion] = None if value is None else (value <= bound if kind == "max" else value >= bound)
    result[PROBE_CRITERION] = probe_passes(figures)
    return result


def mean_figures(runs: list[dict]) -> dict:
    """The mean of each figure over runs (over those that have it)."""
    keys = [key for key in runs[0] if isinstance(runs[0][key], (int, float))]
    means = {}
    for key in keys:
        values = [run[key] for run in runs if run.get(key) is not None]
        means[key] = float(np.mean(values)) if values else None
    return means
