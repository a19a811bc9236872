"""RCA's training schedule, step by step: the contrast loss and bank update of each batch (`rca_step`), when the
aggregation may start (`regions_needed`, `aggregation_ready`), and the k-means centroids it uses
(`refresh_centroids`), and which parameters sit out an epoch (`idle_parameters`). The modules themselves are in
`rca.py`; the training loop is `wsss/train_classifier.py`."""

from __future__ import annotations

import numpy as np
import torch

from ..distributed import all_gather_rows, all_reduce_sum, rank, world_size
from .classifier import CAMClassifier
from .ops import select_rows
from .rca import kmeans, region_embeddings, semantic_contrast_loss


def rca_step(model: CAMClassifier, out: dict, targets: torch.Tensor, sample_seeds: torch.Tensor, rca: dict,
             epoch: int) -> torch.Tensor | None:
    """RCA's per-batch work: the contrast loss (when on and started) and the memory-bank update.

    Regions are the tagged (image, class) pairs; those whose class score is confident enough enter
    the bank after the loss is computed, all-gathered so every rank applies the same updates, in the
    order one process would. `targets` and `sample_seeds` are read on the host, as the loader gives them:
    the regions' indices, image count and mixup seeds then cost no wait for the GPU.
    """
    device = out["embeddings"].device
    host_images, host_classes = targets.cpu().nonzero(as_tuple=True)
    images, classes = host_images.to(device, non_blocking=True), host_classes.to(device, non_blocking=True)
    # in float32 whatever the forward's precision: the regions enter the bank and the contrast (float32 both)
    regions = region_embeddings(out["embeddings"].float(), out["coarse_cams"].float())  # (B, C, D)
    tagged = select_rows(regions.flatten(0, 1), images * regions.shape[1] + classes)  # regions[images, classes]
    contrast = None
    if model.uses_contrast and epoch >= rca["contrast_start_epoch"]:
        num_images = all_reduce_sum(float(len(torch.unique(host_images))), device)
        region_seeds = [(int(sample_seeds[i]), c, epoch) for i, c in zip(host_images.tolist(), host_classes.tolist())]
        contrast = semantic_contrast_loss(tagged, classes, images, model.bank, rca["temperature"], rca["mixup_beta"],
                                          region_seeds, num_images=num_images)
        contrast = contrast * world_size()  # DDP averages gradients over ranks; undo it for a global mean
    confident = torch.sigmoid(out["logits"].detach())[images, classes] > rca["bank_confidence"]
    # each process holds every world_size-th image of the global batch: the gathered regions are put back in
    # the global batch's order, so the bank fills as it would in one process
    position = (images * world_size() + rank()) * regions.shape[1] + classes
    order = torch.argsort(all_gather_rows(position[confident]))
    new_entries = all_gather_rows(tagged[confident].detach())[order]
    new_classes = all_gather_rows(classes[confident])[order]
    model.bank.update(new_entries, new_classes)
    return contrast


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
