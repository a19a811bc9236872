"""Stage: train DeepLab-v2 on label maps (pseudo labels, or true masks for the oracle).

Resume: every `checkpoint_every` iterations a checkpoint goes to `checkpoint_dir/last.pt`; the data
order is a function of (seed, pass over the data), so a resumed run sees the same batches. The
checkpoint is resumed only by a run of the same fingerprint (`core/checkpoint.py`) and removed once the
model is written.

Multi-GPU (torchrun): each process takes its share of every global batch; the loss is the sum over
the labelled pixels of all processes divided by their total count, so the gradients DDP averages
are those of one process on the whole batch.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core.artifacts import file_sha256, save_torch, write_json
from ..core.checkpoint import (load_checkpoint, remove_checkpoints, restore_training_state, save_checkpoint,
                               training_state, weights_sha256)
from ..core.code_version import code_version
from ..core.config import derive_seed, result_compute
from ..core.distributed import all_reduce_sum, init_from_environment, rank, world_size, wrap_distributed
from ..core.guards import FiniteGuard
from ..core.compute import autocast, grad_scaler, memory_format, seed_everything, select_device
from ..core.runtime import log, progress
from ..data.datasets import SegmentationDataset, pass_loader, seeded_batches
from ..data.voc import IGNORE_INDEX, VOCLayout, open_layout
from ..models.deeplab import DeepLabV2, build_deeplab
from ..models.ops import cross_entropy_sum, resize_bilinear


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
    """Yield (iteration, batch) from start_iteration on; pass k over the data is a function of (seed, k).

    Under torchrun each process loads its share (every world_size-th item) of each global batch.
    """
    batch_size = min(settings["batch_size"], len(dataset))
    per_pass = len(dataset) // batch_size
    data_pass, skip = divmod(start_iteration, per_pass)
    iteration = start_iteration
    loader, pass_batches = pass_loader(dataset, loader_workers, pin_memory)
    while True:
        batches = seeded_batches(len(dataset), batch_size, derive_seed(seed, "segmentation", data_pass))
        pass_batches.batches = [batch[rank()::world_size()] for batch in batches[skip:]]
        for batch in loader:
            yield iteration, batch
            iteration += 1
        data_pass, skip = data_pass + 1, 0


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits upsampled to the labels' size, over the labelled pixels of every process.

    Deterministic on CUDA (matrix-product upsampling, one-hot picking). Multiplied by the number of
    processes, because DDP averages the processes' gradients.
    """
    total, count = cross_entropy_sum(resize_bilinear(logits, labels.shape[1:]), labels, IGNORE_INDEX)
    global_count = all_reduce_sum(float(count), logits.device)
    return total * world_size() / max(global_count, 1.0)


def training_step(network, model: DeepLabV2, images: torch.Tensor, labels: torch.Tensor, optimizer, scaler,
                  guard: FiniteGuard, compute: dict, device: torch.device, step: str) -> float:
    """One optimisation step on a batch: the forward in `compute.precision` (autocast), the loss in float32, the
    (fp16: scaled) backward, the guard, the optimiser step. Returns the loss."""
    images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(compute))
    labels = labels.to(device, non_blocking=True)
    with autocast(compute, device):
        logits = network(images)
    loss = segmentation_loss(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    value = guard.check(loss, model.parameters(), step, gradient_overflow_allowed=scaler.is_enabled())
    scaler.step(optimizer)
    scaler.update()
    return value


def init_deeplab(seg: dict, seed: int, num_classes: int):
    """DeepLab's initial weights from the seed alone: every experiment (oracle included) starts the same."""
    seed_everything(derive_seed(seed, "segmentation-init"))
    return build_deeplab(seg, num_classes)


def labels_sha256(label_paths: dict[str, Path]) -> str:
    """One hash of the training labels: their names and contents."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(label_paths):
        digest.update(f"{name}\0{file_sha256(label_paths[name])}\0".encode())
    return digest.hexdigest()


def run_fingerprint(layout: VOCLayout, label_paths: dict[str, Path], settings: dict, device: torch.device) -> dict:
    """Everything a DeepLab run's result depends on (what a checkpoint must match to be resumed)."""
    seg = settings["segmentation"]
    return {"settings": seg, "seed": settings["seed"], "experiment": settings["experiment"],
            "labels": labels_sha256(label_paths), "dataset": layout.content_id(sorted(label_paths)),
            "starting_weights": weights_sha256(seg["backbone"]["weights"]), "code": code_version(__name__),
            "compute": result_compute(settings["compute"]), "device": device.type, "processes": world_size()}


def train_segmentation(dataset: str | Path | VOCLayout, label_paths: dict[str, Path], settings: dict,
                       model_path: str | Path, history_path: str | Path, checkpoint_dir: str | Path,
                       run_record: dict | None = None) -> dict:
    """Train (or resume) DeepLab-v2; write the final model and the loss history (with `run_record`, what ran it,
    as `core.cli.parse_stage_args` makes it for the stage scripts)."""
    seg = settings["segmentation"]
    seed, experiment = settings["seed"], settings["experiment"]
    distributed = init_from_environment()  # under torchrun: one process per GPU
    device = select_device(settings["compute"]["device"])
    is_main = rank() == 0
    if min(seg["batch_size"], len(label_paths)) % world_size():
        raise ValueError(f"segmentation.batch_size {seg['batch_size']} must be a multiple of the {world_size()} "
                         f"processes (it is the global batch)")
    layout = open_layout(dataset)
    num_classes = len(layout.class_names)
    training_set = SegmentationDataset(layout, {name: str(path) for name, path in label_paths.items()},
                                       seg["crop_size"], seg["scale_range"])
    compute = settings["compute"]
    model = init_deeplab(seg, seed, num_classes).to(device, memory_format=memory_format(compute))
    model.train()
    if seg["freeze_batchnorm"]:
        freeze_batchnorm(model)  # before the optimizer, which takes only trainable parameters
    optimizer = make_optimizer(model, seg)
    scaler = grad_scaler(compute, device)  # fp16 only
    network = wrap_distributed(model, device, sync_batchnorm=not seg["freeze_batchnorm"]) if distributed else model

    checkpoint_path = Path(checkpoint_dir) / "last.pt"
    fingerprint = run_fingerprint(layout, label_paths, settings, device)
    history, start = [], 0
    state = load_checkpoint(checkpoint_path, fingerprint, device)
    if state is not None:
        restore_training_state(state, model, optimizer, scaler)
        history, start = state["history"], state["iteration"]
        log.info("resuming segmentation from %s at iteration %d", checkpoint_path, start)

    total = seg["iterations"]
    log.info("DeepLab-v2: %d training images, %d iterations, device %s, %d process(es)", len(training_set), total,
             device, world_size())
    guard = FiniteGuard(f"DeepLab-v2 training ({experiment})", str(checkpoint_path))
    running, window, started = 0.0, 0, time.time()
    stream = batches_from(training_set, seg, seed, start, settings["compute"]["loader_workers"],
                          device.type == "cuda")
    for _ in progress(range(start, total), desc="DeepLab-v2", initial=start, total=total):
        iteration, (images, labels) = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * poly_factor(iteration, total, seg["poly_power"])
        loss = training_step(network, model, images, labels, optimizer, scaler, guard, compute, device,
                             f"iteration {iteration}")
        running += all_reduce_sum(loss, device) / world_size()
        window += 1
        done = iteration + 1
        if done % seg["checkpoint_every"] == 0 or done == total:
            history.append({"iteration": done, "loss": running / window, "lr": optimizer.param_groups[0]["lr"],
                            "seconds": round(time.time() - started, 2)})
            log.info("iteration %d: loss %.4f", done, running / window)
            running, window, started = 0.0, 0, time.time()
            if is_main:
                save_checkpoint({"iteration": done, **training_state(model, optimizer, scaler), "history": history},
                                checkpoint_path, fingerprint)

    if is_main:
        save_torch({"model": model.state_dict(), "num_classes": num_classes, "settings": seg,
                    "class_names": list(layout.class_names), "fingerprint": fingerprint}, model_path)
        write_json(history_path, {"experiment": experiment, "iterations": history, "run": dict(run_record or {})})
        remove_checkpoints(checkpoint_dir)
    return {"history": history, "model": model}
