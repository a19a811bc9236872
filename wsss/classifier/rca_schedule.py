"""RCA's training schedule, step by step: the contrast loss and bank update of each batch (`rca_step`), when the
aggregation may start (`regions_needed`, `aggregation_ready`), and the k-means centroids it uses
(`refresh_centroids`), and which parameters sit out an epoch (`idle_parameters`). The modules themselves are in
`models/rca.py`; the training loop that runs this, beside it, is `train.py`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.distributed import all_gather_rows, all_reduce_sum, gather_global_batch, rank, world_size
from ..models.bank_measures import cell_labels, region_purity
from ..models.classifier import CAMClassifier
from ..models.ops import select_rows
from ..models.rca import (MixupPartners, RegionMemoryBank, bank_partners, batch_partner_draw, kmeans,
                          mixup_contrast_losses, region_embeddings, region_weights, semantic_contrast_loss)


def rca_step(model: CAMClassifier, out: dict, targets: torch.Tensor, sample_seeds: torch.Tensor, rca: dict,
             epoch: int, masks: torch.Tensor | None = None) -> torch.Tensor | None:
    """RCA's per-batch work: the contrast loss (when on and started) and the memory-bank update.

    Regions are the tagged (image, class) pairs; those whose class score is confident enough enter
    the bank after the loss is computed, all-gathered so every rank applies the same updates, in the
    order one process would. `targets` and `sample_seeds` are read on the host, as the loader gives them:
    the regions' indices, image count and mixup seeds then cost no wait for the GPU. Given the images' true
    `masks` (B, H, W), as augmented, each entry's purity is measured and follows it into the bank (never the loss).
    """
    device = out["embeddings"].device
    host_images, host_classes = targets.cpu().nonzero(as_tuple=True)
    images, classes = host_images.to(device, non_blocking=True), host_classes.to(device, non_blocking=True)
    # in float32 whatever the forward's precision: the regions enter the bank and the contrast (float32 both)
    regions = region_embeddings(out["embeddings"].float(), out["coarse_cams"].float())  # (B, C, D)
    tagged = select_rows(regions.flatten(0, 1), images * regions.shape[1] + classes)  # regions[images, classes]
    contrast = None
    if model.uses_contrast and epoch >= rca["contrast_start_epoch"]:
        if not bool(model.bank.filled.any()):
            contrast = tagged.sum() * 0.0
        elif rca["mixup_partner"] == "batch":
            contrast = batch_partner_contrast(model.bank, regions, targets.cpu(), sample_seeds, rca, epoch)
        else:
            contrast = bank_partner_contrast(model.bank, tagged, host_images, host_classes, sample_seeds, rca, epoch)
        contrast = contrast * world_size()  # DDP averages gradients over ranks; undo it for a global mean
    confident = torch.sigmoid(out["logits"].detach())[images, classes] > rca["bank_confidence"]
    # each process holds every world_size-th image of the global batch: the gathered regions are put back in
    # the global batch's order, so the bank fills as it would in one process
    position = (images * world_size() + rank()) * regions.shape[1] + classes
    order = torch.argsort(all_gather_rows(position[confident]))
    new_entries = all_gather_rows(tagged[confident].detach())[order]
    new_classes = all_gather_rows(classes[confident])[order]
    new_purities = None
    if masks is not None:
        coarse_cams = out["coarse_cams"].detach().float()
        purities = region_purity(coarse_cams, cell_labels(masks.to(device), coarse_cams.shape[-2:]))
        new_purities = all_gather_rows(purities[images, classes][confident])[order]
    model.bank.update(new_entries, new_classes, new_purities)
    return contrast


def region_seed(sample_seed: int, cls: int, epoch: int) -> tuple[int, int, int]:
    """The seed of one region's mixup draw: its image's sample seed, its class and the epoch (never the batch or
    the process, so a region draws the same however images are split)."""
    return int(sample_seed), int(cls), int(epoch)


def bank_partner_contrast(bank: RegionMemoryBank, tagged: torch.Tensor, host_images: torch.Tensor,
                          host_classes: torch.Tensor, sample_seeds: torch.Tensor, rca: dict,
                          epoch: int) -> torch.Tensor:
    """This process's contrast (global image mean) with partners drawn from the bank (`mixup_partner: bank`)."""
    device = tagged.device
    num_images = all_reduce_sum(float(len(torch.unique(host_images))), device)
    seeds = [region_seed(sample_seeds[i], c, epoch) for i, c in zip(host_images.tolist(), host_classes.tolist())]
    partners = bank_partners(bank, seeds, rca["mixup_beta"])
    return semantic_contrast_loss(tagged, host_classes.to(device), host_images.to(device), partners, bank,
                                  rca["temperature"], num_images)


def batch_partner_contrast(bank: RegionMemoryBank, regions: torch.Tensor, targets: torch.Tensor,
                           sample_seeds: torch.Tensor, rca: dict, epoch: int) -> torch.Tensor:
    """This process's contrast (global image mean) with partners from the global batch (`mixup_partner: batch`,
    the public code's): each region is mixed with a region of a random image of the batch, and the gradient
    flows into both.

    Under DDP a region and its partner may live on different processes. Every process draws the partners of the
    whole global batch and computes each term that touches one of its own regions: a term of its own region
    counts in its loss; a term of another process's region whose partner is here enters with its value
    subtracted (it counts on the region's process), so that only its gradient reaches this partner. Each region
    then gets its whole gradient on its own process, and no collective runs in the backward pass.
    """
    device, num_classes = regions.device, regions.shape[1]
    batch_targets = gather_global_batch(targets.to(device)).cpu()  # (B, C), the global batch's order
    batch_seeds = gather_global_batch(sample_seeds.to(device)).cpu()
    image_tags = [row.nonzero().flatten().tolist() for row in batch_targets]
    own_positions = torch.arange(len(regions)) * world_size() + rank()
    batch_regions = regions_with_own_gradients(regions, own_positions, len(batch_targets))
    images, classes = batch_targets.nonzero(as_tuple=True)
    draws = [batch_partner_draw(region_seed(batch_seeds[i], c, epoch), rca["mixup_beta"], image_tags)
             for i, c in zip(images.tolist(), classes.tolist())]
    lam = torch.tensor([draw[0] for draw in draws], dtype=torch.float32)
    partner_images = torch.tensor([draw[1] for draw in draws], dtype=torch.long)
    partner_classes = torch.tensor([draw[2] for draw in draws], dtype=torch.long)
    is_own = torch.zeros(len(batch_targets), dtype=torch.bool)
    is_own[own_positions] = True
    owned = is_own[images]
    involved = owned | is_own[partner_images]  # the terms that touch a region of this process

    flat = batch_regions.flatten(0, 1)
    queries = select_rows(flat, (images * num_classes + classes)[involved].to(device))
    partners = MixupPartners(lam[involved].to(device),
                             select_rows(flat, (partner_images * num_classes + partner_classes)[involved].to(device)),
                             partner_classes[involved].to(device))
    losses = mixup_contrast_losses(queries, classes[involved].to(device), partners, bank, rca["temperature"])
    weighted = losses * region_weights(images)[involved].to(device)
    counted = owned[involved].to(device)
    total = torch.where(counted, weighted, weighted - weighted.detach()).sum()
    return total / float(len(torch.unique(images)))


def regions_with_own_gradients(regions: torch.Tensor, own_positions: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B, C, D) regions of the global batch: this process's own (`regions`, at `own_positions`) with their
    gradient, the other processes' as constants. One process: `regions` itself."""
    if world_size() == 1:
        return regions
    gathered = gather_global_batch(regions.detach())
    placement = F.one_hot(own_positions.to(regions.device), batch_size).T.to(regions.dtype)  # (B, B_own)
    placed = (placement @ regions.flatten(1)).view(batch_size, *regions.shape[1:])
    is_own = placement.sum(1).bool()[:, None, None]
    return torch.where(is_own, placed, gathered)


def aggregation_ready(model: CAMClassifier, regions_needed: dict[int, int]) -> bool:
    """Whether every class's bank holds the regions its k-means needs (`regions_needed`, per class).

    Trained from scratch, the classifier learns rare classes late. A class with no confident region
    when the first k-means runs has no centroids: its pixels aggregate other classes' centroids, the
    refined head learns to deny it and, as only confident regions enter the bank, it never gets in.
    So the aggregation waits for every class (measurements: docs/method.md). With ImageNet weights
    every class is confident within the first epoch, as in the paper.
    """
    filled = model.bank.filled.sum(1).tolist()
    return all(filled[cls] >= needed for cls, needed in regions_needed.items())


def regions_needed(tags: dict[str, list[int]], num_classes: int, rca: dict) -> dict[int, int]:
    """Per class, the bank entries before the aggregation starts: `clusters` (fewer for a class with
    fewer tagged images or a smaller bank, which could never hold more)."""
    counts = np.bincount([tag for image_tags in tags.values() for tag in image_tags], minlength=num_classes)
    return {cls: min(rca["clusters"], rca["bank_size"], int(counts[cls])) for cls in range(num_classes)}


@torch.no_grad()
def refresh_centroids(model: CAMClassifier, rca: dict, seed: int) -> None:
    """k-means on each class's bank (seeded); classes with an empty bank get zero centroids."""
    generator = torch.Generator().manual_seed(seed)
    centroids = []
    for cls in range(model.num_classes):
        points = model.bank.entries[cls][model.bank.filled[cls]].cpu()
        if len(points) == 0:
            centroids.append(torch.zeros(rca["clusters"], model.bank.entries.shape[-1]))
        else:
            centroids.append(kmeans(points, rca["clusters"], rca["kmeans_iterations"], generator))
    model.aggregation.set_centroids(torch.cat(centroids).to(model.bank.entries.device))


def idle_parameters(model: CAMClassifier, epoch: int, rca: dict) -> list[torch.nn.Parameter]:
    """The parameters that cannot reach this epoch's loss.

    Before its first k-means the aggregation adds zeros (its projection, and the public variant's query, key
    and value, sit out; the fuse layer does not); the projection head feeds only the contrast and the
    aggregation, so it sits out while neither runs. Under DDP each of these parameters is given a zero
    gradient (see `train_one_epoch`), so that DDP need not search the graph for unused parameters every step.
    """
    aggregating = model.aggregation is not None and bool(model.aggregation.ready)
    idle = []
    if model.aggregation is not None and not aggregating:
        idle += [parameter for name, parameter in model.aggregation.named_parameters() if not name.startswith("fuse.")]
    contrasting = model.uses_contrast and epoch >= rca["contrast_start_epoch"]
    if model.projection is not None and not (contrasting or aggregating):
        idle += list(model.projection.parameters())
    return idle
