"""Stage: class activation maps of the trained classifier by multi-scale + flip inference (kept by `store.py`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..core.checkpoint import load_trained_model
from ..core.compute import autocast, memory_format, select_device
from ..core.runtime import log, progress
from ..data.datasets import InferenceDataset, collate_inference, image_sizes, size_grouped_batches
from ..data.voc import VOCLayout, open_layout, shard_names
from ..models.classifier import CAMClassifier, build_classifier
from .ablation import aggregate_zeroed
from .store import BackgroundWriter, CamWriter, read_cams



def load_classifier(model_path: str | Path, device: torch.device) -> CAMClassifier:
    """A classifier written by the classifier stage, checked and in eval mode."""
    return load_trained_model(model_path, device, build_classifier)


@torch.no_grad()
def multiscale_cams(model, images: torch.Tensor, scales, flip: bool, compute: dict | None = None,
                    classes: list[int] | None = None) -> torch.Tensor:
    """ReLU'd CAMs of a batch (B, 3, H, W), summed over scales (and flips), at (H, W): (B, C, H, W), float32.

    `compute`: the forward's precision and memory format (the maps are resized and summed in float32).
    `classes`: only these channels (in this order) are resized and summed, (B, len(classes), H, W): the work of
    full-resolution upsampling grows with the channels, and an image needs only its tags'."""
    compute = compute or {}
    images = images.contiguous(memory_format=memory_format(compute))
    height, width = images.shape[2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False) if scale != 1 else images
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        with autocast(compute, images.device):
            cams = model(batch)["cams"]
        cams = F.relu(cams.float() if classes is None else cams[:, classes].float())
        if flip:
            cams = cams[: len(images)] + cams[len(images):].flip(-1)
        cams = F.interpolate(cams, size=(height, width), mode="bilinear", align_corners=False)
        total = cams if total is None else total + cams
    return total


def normalise_per_class(cams: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Scale each (.., H, W) map to [0, 1] by its maximum (maps are non-negative)."""
    peak = cams.flatten(-2).amax(-1)[..., None, None]
    return cams / (peak + eps)


def extract_accumulated_cams(accumulated_path: str | Path, dataset: str | Path | VOCLayout, split: str,
                             out_path: str | Path, shard: int = 0, num_shards: int = 1) -> int:
    """Store one shard of the training-time accumulated CAMs (OAA), resized to image size, in [0, 1]."""
    layout = open_layout(dataset)
    tags = layout.tags(split)
    names = shard_names(list(tags), shard, num_shards)
    with CamWriter(out_path, expected_names=names) as writer:
        for name, size in progress(zip(names, image_sizes(layout, names)), desc=f"accumulated CAM shard {shard}",
                                   total=len(names)):
            maps, map_tags = read_cams(accumulated_path, name)
            if map_tags != tags[name]:
                raise ValueError(f"{accumulated_path}: tags of {name} are {map_tags}, the split says {tags[name]}")
            maps = torch.from_numpy(maps)[None]
            if len(map_tags):
                maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
            writer.write(name, normalise_per_class(maps[0].clamp(min=0)).numpy() if len(map_tags)
                         else np.zeros((0, *size), np.float32), map_tags)
    return len(names)


ABLATIONS = ("aggregation",)


def extract_cams(model_path: str | Path, dataset: str | Path | VOCLayout, split: str, settings: dict,
                 out_path: str | Path, shard: int = 0, num_shards: int = 1, ablation: str | None = None) -> int:
    """Compute and store the CAMs of one shard of a split; returns the number of images written.

    `ablation` "aggregation": with the semantic aggregation's aggregate zeroed (`ablation.aggregate_zeroed`)."""
    if ablation not in (None, *ABLATIONS):
        raise ValueError(f"unknown ablation {ablation!r} (known: {', '.join(ABLATIONS)})")
    cam_settings = settings["cam"]
    device = select_device(settings["compute"]["device"])
    layout = open_layout(dataset)
    tags = layout.tags(split)
    names = shard_names(list(tags), shard, num_shards)
    model = load_classifier(model_path, device).to(memory_format=memory_format(settings["compute"]))
    dataset = InferenceDataset(layout, names)
    batches = size_grouped_batches(image_sizes(layout, names), cam_settings["batch_size"])
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_inference,
                        num_workers=settings["compute"]["loader_workers"], pin_memory=device.type == "cuda")
    log.info("CAMs of shard %d/%d: %d images of split %s on %s%s", shard, num_shards, len(names), split, device,
             f", {ablation} ablated" if ablation else "")
    ablated = aggregate_zeroed(model) if ablation == "aggregation" else contextlib.nullcontext()
    with ablated, CamWriter(out_path, expected_names=names) as store, BackgroundWriter(store) as writer:
        for images, batch_names in progress(loader, desc=f"CAM shard {shard}", total=len(batches)):
            batch_classes = sorted({tag for name in batch_names for tag in tags[name]})  # the batch's tags only
            cams = multiscale_cams(model, images.to(device, non_blocking=True), cam_settings["scales"],
                                   cam_settings["flip"], settings["compute"], batch_classes)
            for cam, name in zip(cams, batch_names):
                image_tags = tags[name]
                channels = [batch_classes.index(tag) for tag in image_tags]
                selected = normalise_per_class(cam[channels]) if image_tags else cam[:0]
                writer.write(name, selected.cpu().numpy(), image_tags)
    return len(names)
