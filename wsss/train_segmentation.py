"""Stage: train DeepLab-v2 on label maps (pseudo labels, or true masks for the oracle); predict and evaluate.

Resume: every `checkpoint_every` iterations a checkpoint goes to `checkpoint_dir/last.pt`; the data
order is a function of (seed, pass over the data), so a resumed run sees the same batches.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import files_fingerprint, fingerprint, load_checkpoint, load_trained_model, save_checkpoint
from .config import derive_seed
from .data.datasets import (InferenceDataset, SegmentationDataset, collate_inference, image_sizes, seeded_batches,
                            size_grouped_batches)
from .data.voc import IGNORE_INDEX, VOCLayout, read_image, write_label_png
from .models.deeplab import DeepLabV2, build_deeplab
from .runtime import log, progress, save_json, save_torch, seed_everything, select_device


def freeze_batchnorm(model: DeepLabV2) -> None:
    """Fix the backbone's BatchNorm layers: running statistics used as they are, affine parameters frozen."""
    for module in model.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)


def make_optimizer(model: DeepLabV2, settings: dict) -> torch.optim.SGD:
    groups = {name: [p for p in params if p.requires_grad] for name, params in model.param_groups().items()}
    lr = settings["lr"]
    return torch.optim.SGD(
        [{"params": groups["backbone"], "base_lr": lr, "lr": lr},
         {"params": groups["classifier"], "base_lr": lr * settings["classifier_lr_mult"],
          "lr": lr * settings["classifier_lr_mult"]}],
        lr=lr, momentum=settings["momentum"], weight_decay=settings["weight_decay"])


def poly_factor(iteration: int, total: int, power: float) -> float:
    return (1 - iteration / total) ** power


def batches_from(dataset, settings: dict, seed: int, start_iteration: int, loader_workers: int,
                 pin_memory: bool):
    """Yield (iteration, batch) from start_iteration on; pass k over the data is a function of (seed, k)."""
    batch_size = min(settings["batch_size"], len(dataset))
    per_pass = len(dataset) // batch_size
    data_pass, skip = divmod(start_iteration, per_pass)
    iteration = start_iteration
    while True:
        batches = seeded_batches(len(dataset), batch_size, derive_seed(seed, "segmentation", data_pass))
        loader = DataLoader(dataset, batch_sampler=batches[skip:], num_workers=loader_workers, pin_memory=pin_memory)
        for batch in loader:
            yield iteration, batch
            iteration += 1
        data_pass, skip = data_pass + 1, 0


def init_deeplab(seg: dict, seed: int, num_classes: int):
    """DeepLab's initial weights from the seed alone: every experiment (oracle included) starts the same."""
    seed_everything(derive_seed(seed, "segmentation-init"))
    return build_deeplab(seg, num_classes)


def train_segmentation(dataset_root: str | Path, label_paths: dict[str, Path], settings: dict, model_path: str | Path,
                       history_path: str | Path, checkpoint_dir: str | Path) -> dict:
    seg = settings["segmentation"]
    seed, experiment = settings["seed"], settings["experiment"]
    device = select_device(settings["compute"]["device"])
    layout = VOCLayout(dataset_root)
    num_classes = len(layout.class_names)
    dataset = SegmentationDataset(layout, {name: str(path) for name, path in label_paths.items()},
                                  seg["crop_size"], seg["scale_range"])
    model = init_deeplab(seg, seed, num_classes).to(device)
    model.train()
    if seg["freeze_batchnorm"]:
        freeze_batchnorm(model)  # before the optimizer, which takes only trainable parameters
    optimizer = make_optimizer(model, seg)

    checkpoint_path = Path(checkpoint_dir) / "last.pt"
    run_fingerprint = fingerprint(seg, seed, experiment, sorted(label_paths),
                                  files_fingerprint(label_paths[name] for name in sorted(label_paths)))
    history, start = [], 0
    state = load_checkpoint(checkpoint_path, run_fingerprint, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start = state["history"], state["iteration"]
        log.info("resuming segmentation from %s at iteration %d", checkpoint_path, start)

    total = seg["iterations"]
    log.info("DeepLab-v2: %d training images, %d iterations, device %s", len(dataset), total, device)
    running, window, started = 0.0, 0, time.time()
    stream = batches_from(dataset, seg, seed, start, settings["compute"]["loader_workers"],
                          device.type == "cuda")
    bar = progress(range(start, total), desc="DeepLab-v2", initial=start, total=total)
    for _ in bar:
        iteration, (images, labels) = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * poly_factor(iteration, total, seg["poly_power"])
        images, labels = images.to(device), labels.to(device)
        logits = F.interpolate(model(images), size=labels.shape[1:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item()
        window += 1
        done = iteration + 1
        if done % seg["checkpoint_every"] == 0 or done == total:
            history.append({"iteration": done, "loss": running / window, "lr": optimizer.param_groups[0]["lr"],
                            "seconds": round(time.time() - started, 2)})
            log.info("iteration %d: loss %.4f", done, running / window)
            running, window, started = 0.0, 0, time.time()
            save_checkpoint({"iteration": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "history": history}, checkpoint_path, run_fingerprint)

    save_torch({"model": model.state_dict(), "num_classes": num_classes, "settings": seg,
                "class_names": layout.class_names}, model_path)
    save_json({"experiment": experiment, "iterations": history}, history_path)
    return {"history": history}


def load_deeplab(model_path: str | Path, device: torch.device) -> DeepLabV2:
    return load_trained_model(model_path, device, build_deeplab)


@torch.no_grad()
def predict(model_path: str | Path, dataset_root: str | Path, split: str, settings: dict, out_dir: str | Path,
            crf_settings: dict | None = None, batch_size: int = 8) -> dict[str, Path]:
    """Write a palette PNG prediction for every image of a split (CRF post-processing when given)."""
    from .crf import dense_crf

    device = select_device(settings["compute"]["device"])
    layout = VOCLayout(dataset_root)
    names = layout.names(split)
    model = load_deeplab(model_path, device)
    batches = size_grouped_batches(image_sizes(layout, names), batch_size)
    loader = DataLoader(InferenceDataset(layout, names), batch_sampler=batches, collate_fn=collate_inference,
                        num_workers=settings["compute"]["loader_workers"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for images, batch_names in progress(loader, desc=f"predicting {split}", total=len(batches)):
        images = images.to(device)
        logits = model(images) + model(images.flip(-1)).flip(-1)
        probabilities = F.softmax(F.interpolate(logits, size=images.shape[2:], mode="bilinear",
                                                align_corners=False), dim=1).cpu().numpy()
        for probability, name in zip(probabilities, batch_names):
            if crf_settings is not None:
                probability = dense_crf(read_image(layout.image_path(name)), probability, crf_settings)
            paths[name] = out_dir / f"{name}.png"
            write_label_png(paths[name], probability.argmax(0).astype(np.uint8))
    return paths
