"""Stage: train the classification network on image-level tags (multi-label soft margin).

Resume: after every epoch a checkpoint goes to `checkpoint_dir/last.pt` (beside, not as, the output),
and each epoch's order and augmentation are a function of (seed, epoch), so a run resumed after a
kill gives the same model. The checkpoint is resumed only by a run of the same fingerprint
(`core/checkpoint.py`) and removed once the model is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.artifacts import save_torch, write_json
from ..core.checkpoint import (load_checkpoint, remove_checkpoints, restore_training_state, save_checkpoint,
                               training_state, weights_sha256)
from ..core.code_version import code_version
from ..core.config import derive_seed, result_compute
from ..core.distributed import all_reduce_sum, init_from_environment, rank, world_size, wrap_distributed
from ..core.guards import FiniteGuard
from ..core.compute import autocast, grad_scaler, memory_format, seed_everything, select_device
from ..core.runtime import log, progress
from ..data.datasets import ClassificationDataset, pass_loader, seeded_batches, split_has_masks
from ..data.voc import VOCLayout, open_layout
from ..models.bank_measures import bank_summary
from ..models.classifier import CAMClassifier, build_classifier
from .oaa import accumulate_cams, read_accumulated, write_accumulated
from .rca_schedule import aggregation_ready, idle_parameters, rca_step, refresh_centroids, regions_needed


def lr_factor(epoch: int, settings: dict) -> float:
    """Step schedule (x lr_gamma at each milestone) with optional linear warm-up, per epoch."""
    factor = settings["lr_gamma"] ** sum(epoch >= milestone for milestone in settings["lr_milestones"])
    if epoch < settings["warmup_epochs"]:
        factor *= (epoch + 1) / (settings["warmup_epochs"] + 1)
    return factor


def make_optimizer(model: CAMClassifier, settings: dict) -> torch.optim.Optimizer:
    """SGD with the RCA groups: backbone 1x/2x, new layers 10x/20x (weights/biases); no decay on biases."""
    lr, mult = settings["lr"], settings["new_layer_lr_mult"]
    groups = model.param_groups()
    spec = {"backbone_weight": (1.0, True), "backbone_bias": (2.0, False),
            "new_weight": (mult, True), "new_bias": (2.0 * mult, False)}
    param_groups = [
        {"params": groups[name], "base_lr": lr * scale, "lr": lr * scale,
         "weight_decay": settings["weight_decay"] if decay else 0.0}
        for name, (scale, decay) in spec.items() if groups[name]
    ]
    return torch.optim.SGD(param_groups, lr=lr, momentum=settings["momentum"], nesterov=settings["nesterov"])


def train_one_epoch(model, loader, optimizer, device, epoch: int, settings: dict, guard: FiniteGuard,
                    network=None, compute: dict | None = None, scaler: torch.amp.GradScaler | None = None) -> dict:
    """One pass; `network` is the DDP wrapper of `model` in a multi-process run (forward goes through it).

    `compute`: precision (the forward under autocast; the losses in float32) and memory format; `scaler`: fp16's
    loss scaler (a step whose gradients overflow is skipped and the scale lowered)."""
    network = network or model
    network.train()
    compute = compute or {}
    scaler = scaler or grad_scaler(compute, device)
    rca = settings["rca"]
    # DDP expects a gradient for every parameter in every step: those that sit out this epoch get a zero one
    # through the loss, which is then dropped after the reduction, so the optimizer skips them as in one process
    idle = idle_parameters(model, epoch, rca) if network is not model else []
    total_loss = total_contrast = 0.0
    correct = seen_tags = images = 0
    for step, (batch_images, targets, sample_seeds, *masks) in enumerate(progress(loader,
                                                                                   desc=f"classifier epoch {epoch}",
                                                                                   leave=False)):
        batch_images = batch_images.to(device, non_blocking=True).contiguous(memory_format=memory_format(compute))
        host_targets, targets = targets, targets.to(device, non_blocking=True)
        with autocast(compute, device):
            out = network(batch_images)
        loss = F.multilabel_soft_margin_loss(out["logits"].float(), targets)
        if model.uses_aggregation:
            loss = loss + rca["coarse_weight"] * F.multilabel_soft_margin_loss(out["coarse_logits"].float(), targets)
        contrast = None
        if model.bank is not None:
            contrast = rca_step(model, out, host_targets, sample_seeds, rca, epoch, masks[0] if masks else None)
            if contrast is not None:
                loss = loss + rca["contrast_weight"] * contrast
        if idle:
            loss = loss + 0.0 * sum(parameter.sum() for parameter in idle)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for parameter in idle:
            parameter.grad = None
        scaler.unscale_(optimizer)
        loss_value = guard.check(loss, model.parameters(), f"epoch {epoch} step {step}",
                                 gradient_overflow_allowed=scaler.is_enabled())
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss_value * len(batch_images)
        if contrast is not None:
            total_contrast += float(contrast.detach()) * len(batch_images)
        correct += int(((out["logits"] > 0).float() == targets).sum())
        seen_tags += targets.numel()
        images += len(batch_images)
    totals = [all_reduce_sum(value, device) for value in (total_loss, total_contrast, correct, seen_tags, images)]
    total_loss, total_contrast, correct, seen_tags, images = totals  # over every process
    return {"epoch": epoch, "loss": total_loss / images, "contrast_loss": total_contrast / images,
            "tag_accuracy": correct / seen_tags}


def init_classifier(train_settings: dict, seed: int, num_classes: int) -> CAMClassifier:
    """The classifier's initial weights: a function of the seed alone, never of the experiment's name.

    Experiments share their random draws (initial weights, data order, augmentation, k-means
    starts): the layers they have in common start from the same values and see the same batches,
    so the rows of an ablation table differ by their settings, not by their luck.
    """
    seed_everything(derive_seed(seed, "classifier-init"))
    return build_classifier(train_settings, num_classes)


def measures_bank_purity(layout: VOCLayout, split: str, train_settings: dict, requested: bool | None) -> bool:
    """Whether this run measures its bank entries' purity: an RCA run (a bank) whose training split has true masks.
    `requested` None: whenever it can; False: never; True: it must (an error where it cannot)."""
    has_bank = train_settings["rca"]["contrast"] or train_settings["rca"]["aggregation"]
    if requested is False or not has_bank:
        return False
    if split_has_masks(layout, split):
        return True
    if requested:
        raise ValueError(f"the bank's purity is measured against true masks: split {split!r} has none")
    return False


def run_fingerprint(layout: VOCLayout, dataset: ClassificationDataset, settings: dict, device: torch.device) -> dict:
    """Everything a classifier run's result depends on (what a checkpoint must match to be resumed)."""
    train_settings = settings["classifier"]
    return {"settings": train_settings, "seed": settings["seed"], "experiment": settings["experiment"],
            "tags": dataset.tags, "dataset": layout.content_id(dataset.names),
            "starting_weights": weights_sha256(train_settings["backbone"]["weights"]),
            "code": code_version(__name__), "compute": result_compute(settings["compute"]),
            "device": device.type, "processes": world_size()}


def train_classifier(dataset: str | Path | VOCLayout, split: str, settings: dict, model_path: str | Path,
                     history_path: str | Path, checkpoint_dir: str | Path,
                     accumulated_path: str | Path | None = None, val_split: str | None = None,
                     accumulated_val_path: str | Path | None = None, bank_purity: bool | None = None,
                     run_record: dict | None = None) -> dict:
    """Train (or resume) the classifier; write the final model and the per-epoch history (with `run_record`, what
    ran it: code version, compute settings, where; `core.cli.parse_stage_args` makes it for the stage scripts).

    With `classifier.accumulate_cams`, also the online-accumulated CAMs (to `accumulated_path`), and, given
    `val_split` and `accumulated_val_path`, those of the val images, accumulated after every epoch in the same
    way (never trained on): the background threshold chosen on val then fits the maps it is applied to.

    An RCA run records after every epoch what its bank holds (`bank_measures.bank_summary`): the nearest-neighbour
    accuracy of its entries and, where the training split has true masks (`bank_purity`: see
    `measures_bank_purity`), their purity. The masks reach the measurement only: the weights and the bank are the
    same with it or without.
    """
    train_settings = settings["classifier"]
    seed, experiment = settings["seed"], settings["experiment"]
    distributed = init_from_environment()  # under torchrun: one process per GPU
    device = select_device(settings["compute"]["device"])
    is_main = rank() == 0
    if train_settings["batch_size"] % world_size():
        raise ValueError(f"classifier.batch_size {train_settings['batch_size']} must be a multiple of the "
                         f"{world_size()} processes (it is the global batch)")
    layout = open_layout(dataset)
    measuring_purity = measures_bank_purity(layout, split, train_settings, bank_purity)
    dataset = ClassificationDataset(layout, split, train_settings["input_size"], train_settings["scale_range"],
                                    train_settings["color_jitter"], with_masks=measuring_purity)
    compute = settings["compute"]
    model = init_classifier(train_settings, seed, layout.num_foreground).to(device,
                                                                           memory_format=memory_format(compute))
    optimizer = make_optimizer(model, train_settings)
    scaler = grad_scaler(compute, device)
    network = wrap_distributed(model, device) if distributed else model

    accumulating = train_settings["accumulate_cams"]
    if accumulating and accumulated_path is None:
        raise ValueError("classifier.accumulate_cams is on: give a path for the accumulated CAMs")
    if (val_split is None) != (accumulated_val_path is None):
        raise ValueError("the val split's accumulated CAMs need both val_split and accumulated_val_path")
    # OAA's maps of the images each pass accumulates: the training split's, and the val split's when asked
    accumulating_sets = {}
    if accumulating:
        accumulating_sets["train"] = (dataset, Path(checkpoint_dir) / "accumulated.h5", accumulated_path)
        if val_split is not None:
            val_images = ClassificationDataset(layout, val_split, train_settings["input_size"])
            accumulating_sets["val"] = (val_images, Path(checkpoint_dir) / "accumulated_val.h5", accumulated_val_path)
    checkpoint_path = Path(checkpoint_dir) / "last.pt"
    fingerprint = {**run_fingerprint(layout, dataset, settings, device), "accumulating": sorted(accumulating_sets)}
    if measuring_purity:  # a checkpoint without the purities of its bank's entries cannot go on measuring them
        fingerprint["bank_purity"] = True
    if fingerprint["starting_weights"]:
        log.info("backbone starts from %s (sha256 %s)", train_settings["backbone"]["weights"],
                 fingerprint["starting_weights"])
    history, start_epoch = [], 0
    accumulated = {role: {} for role in accumulating_sets}
    state = load_checkpoint(checkpoint_path, fingerprint, device)
    if state is not None:
        restore_training_state(state, model, optimizer, scaler)
        if measuring_purity:
            model.bank.purity.copy_(state["bank_purity"])
        history, start_epoch = state["history"], state["epoch"] + 1
        accumulated = {role: read_accumulated(checkpoint) for role, (_, checkpoint, _) in accumulating_sets.items()}
        log.info("resuming classifier from %s at epoch %d", checkpoint_path, start_epoch)

    log.info("classifier: %d images, %d classes, device %s, %d epochs, %d process(es)", len(dataset),
             layout.num_foreground, device, train_settings["epochs"], world_size())
    guard = FiniteGuard(f"classifier training ({experiment})", str(checkpoint_path))
    if model.uses_aggregation:
        needed = regions_needed(dataset.tags, layout.num_foreground, train_settings["rca"])
    loader, pass_batches = pass_loader(dataset, settings["compute"]["loader_workers"], device.type == "cuda")
    for epoch in range(start_epoch, train_settings["epochs"]):
        batches = seeded_batches(len(dataset), train_settings["batch_size"],
                                 derive_seed(seed, "classifier", epoch))
        # this rank's share of each global batch
        pass_batches.batches = [batch[rank()::world_size()] for batch in batches]
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(epoch, train_settings)
        aggregating = False
        if model.uses_aggregation and epoch >= 1:
            aggregating = bool(model.aggregation.ready) or aggregation_ready(model, needed)
            if aggregating:
                refresh_centroids(model, train_settings["rca"], derive_seed(seed, "kmeans", epoch))
            else:
                log.info("epoch %d: aggregation waits, bank entries per class %s (needed %s)", epoch,
                         model.bank.filled.sum(1).tolist(), list(needed.values()))
        started = time.time()
        record = train_one_epoch(model, loader, optimizer, device, epoch, train_settings, guard, network, compute,
                                 scaler)
        record.update(lr=optimizer.param_groups[0]["lr"], seconds=round(time.time() - started, 2))
        if model.uses_aggregation:
            record["aggregation"] = aggregating
        if model.bank is not None and is_main:
            record["bank"] = bank_summary(model.bank, measuring_purity)
        history.append(record)
        log.info("epoch %d: loss %.4f tag accuracy %.4f (%.1f s)", epoch, record["loss"], record["tag_accuracy"],
                 record["seconds"])
        if not is_main:
            continue  # rank 0 writes: the ranks hold identical weights and banks
        for role, (images, checkpoint, _) in accumulating_sets.items():
            accumulate_cams(model, images, accumulated[role], train_settings["accumulate_threshold"],
                            train_settings["batch_size"], device, compute, settings["compute"]["loader_workers"])
            write_accumulated(accumulated[role], images.tags, checkpoint)  # before last.pt: kept in step
        save_checkpoint({"epoch": epoch, **training_state(model, optimizer, scaler), "history": history,
                         **({"bank_purity": model.bank.purity} if measuring_purity else {})},
                        checkpoint_path, fingerprint)

    if not is_main:
        return {"history": history, "model": model}
    save_torch({"model": model.state_dict(), "num_classes": layout.num_foreground, "settings": train_settings,
                "class_names": list(layout.class_names), "fingerprint": fingerprint}, model_path)
    write_json(history_path, {"experiment": experiment, "epochs": history, "run": dict(run_record or {})})
    for role, (images, _, path) in accumulating_sets.items():
        write_accumulated(accumulated[role], images.tags, path)
    remove_checkpoints(checkpoint_dir)
    return {"history": history, "model": model}

