"""Where RCA's semantic aggregation looks: the attention mass each feature cell puts on each class's centroids.

The aggregation (`models.rca.SemanticAggregation`, variant "paper") gives every cell of the feature map a softmax
over the K = C x clusters centroids, `clusters` per class in class order (`refresh_centroids`), and adds the
attention-weighted centroids to the cell's feature. RCA's premise is that a cell on an object's body, which the
tag-trained head alone scores weakly, draws the centroids of its own class and so gains that class's semantics. This
module measures whether it does, on a trained model at inference:

- own-class attention: the mass a cell on an object (its body, or its marking) puts on the centroids of the
  object's class, averaged over such cells; uniform attention gives 1 / C;
- own-class top: the share of those cells whose most attended class (the class of largest mass) is their own;
- on background cells, the mass on the classes of the image's tags.

A cell is assigned the true label and part found at its centre pixel. Only the mechanism rules call
`measure_attention`, which reads the dataset's parts/ folder; no training or tuning step does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..cams.extract import load_classifier
from ..core.compute import autocast, select_device
from ..core.runtime import progress
from ..data.datasets import InferenceDataset, collate_inference, image_sizes, size_grouped_batches
from ..data.parts import decode_parts
from ..data.voc import IGNORE_INDEX, open_layout
from .mechanism import read_parts_map

CELL_KINDS = ("body", "marking", "background")


def class_attention(attention: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C, h*w) attention mass per class from the (B, h*w, K) attention over K = C x clusters centroids stored
    class by class."""
    batch, cells, centroids = attention.shape
    if centroids % num_classes:
        raise ValueError(f"{centroids} centroids are not a whole number per class of {num_classes}")
    return attention.reshape(batch, cells, num_classes, centroids // num_classes).sum(-1).transpose(1, 2)


def cell_centres(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(h, w) the values of an (H, W) map at the centre pixels of a (h, w) grid of cells covering it."""
    height, width = np.asarray(labels).shape
    rows = np.minimum(((np.arange(grid[0]) + 0.5) * height / grid[0]).astype(int), height - 1)
    cols = np.minimum(((np.arange(grid[1]) + 0.5) * width / grid[1]).astype(int), width - 1)
    return np.asarray(labels)[np.ix_(rows, cols)]


def cell_kinds(truth: np.ndarray, parts: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, kinds) of a (h, w) grid of cells: the true label at each centre (0 background, 1 + c, 255 ignore)
    and its kind, 0 body, 1 marking, 2 background, -1 neither (ignore, or an object pixel the parts map misses)."""
    labels = cell_centres(truth, grid).astype(np.int64)
    instances, marking = (cell_centres(part, grid) for part in decode_parts(parts))
    on_object = (labels != 0) & (labels != IGNORE_INDEX) & (instances > 0)
    kinds = np.full(labels.shape, -1, np.int64)
    kinds[on_object & ~marking] = 0
    kinds[on_object & marking] = 1
    kinds[labels == 0] = 2
    return labels, kinds


def empty_tally() -> dict[str, np.ndarray]:
    """{kind: [summed mass, cells whose top class is the measured one, cells, summed mass of uniform attention]}
    at zero."""
    return {kind: np.zeros(4, np.float64) for kind in CELL_KINDS}


def attention_tally(mass: np.ndarray, labels: np.ndarray, kinds: np.ndarray, tags: list[int]) -> dict[str, np.ndarray]:
    """One image's tally from its (C, h, w) class mass and `cell_kinds`: on body and marking cells the mass on the
    cell's own class (label - 1), whether it is the top class; on background cells the mass on the image's tags and
    whether a tag is the top class."""
    mass = np.asarray(mass, np.float64)
    top = mass.argmax(0)
    tally = empty_tally()
    for index, kind in enumerate(CELL_KINDS[:2]):
        cells = kinds == index
        own = labels[cells] - 1
        on_own = mass[:, cells][own, np.arange(own.size)]
        tally[kind] += [on_own.sum(), (top[cells] == own).sum(), own.size, own.size / len(mass)]
    background = kinds == 2
    tag_mass = mass[list(tags)][:, background].sum(0) if tags else np.zeros(int(background.sum()))
    cells = int(background.sum())
    tally["background"] += [tag_mass.sum(), np.isin(top[background], list(tags)).sum(), cells,
                             cells * len(tags) / len(mass)]
    return tally


def summarise_tally(tally: dict[str, np.ndarray]) -> dict:
    """Means of a summed tally: per kind the mean mass, what uniform attention would give, and the share of top
    cells (None without cells)."""
    figures = {}
    for kind, (mass, top, cells, uniform) in tally.items():
        name = "tag" if kind == "background" else "own_class"
        figures[kind] = {f"{name}_attention": mass / cells if cells else None,
                         "uniform_attention": uniform / cells if cells else None,
                         f"{name}_top": top / cells if cells else None, "cells": int(cells)}
    return figures


@torch.no_grad()
def measure_attention(model_path, dataset, split: str, compute: dict, batch_size: int = 16) -> dict:
    """The own-class attention figures of a trained model with the semantic aggregation over a split (one scale,
    no flip). A model whose aggregation never started (no k-means ran) has none: `ready` is false."""
    device = select_device(compute["device"])
    model = load_classifier(model_path, device)
    aggregation = getattr(model, "aggregation", None)
    if aggregation is None:
        raise ValueError(f"{model_path}: the model has no semantic aggregation (rca.aggregation is off)")
    if aggregation.variant != "paper":
        raise ValueError(f"{model_path}: attention mass is measured for the 'paper' aggregation (a softmax), "
                         f"this model's is {aggregation.variant!r}")
    layout = open_layout(dataset)
    result = {"stage": "attention", "split": split, "ready": bool(aggregation.ready),
              "clusters_per_class": aggregation.centroids.shape[0] // model.num_classes}
    if not result["ready"]:
        return {**result, **summarise_tally(empty_tally())}
    tags = layout.tags(split)
    names = list(tags)
    batches = size_grouped_batches(image_sizes(layout, names), batch_size)
    loader = DataLoader(InferenceDataset(layout, names), batch_sampler=batches, collate_fn=collate_inference)
    total = empty_tally()
    for images, batch_names in progress(loader, desc=f"attention on {split}", total=len(batches)):
        with autocast(compute, device):
            embeddings = model(images.to(device))["embeddings"].float()
        masses = class_attention(aggregation.attention(embeddings), model.num_classes)
        masses = masses.reshape(len(images), model.num_classes, *embeddings.shape[2:]).cpu().numpy()
        for mass, name in zip(masses, batch_names):
            labels, kinds = cell_kinds(layout.read_mask(name, split), read_parts_map(layout, name), mass.shape[1:])
            tally = attention_tally(mass, labels, kinds, tags[name])
            total = {kind: total[kind] + tally[kind] for kind in total}
    return {**result, **summarise_tally(total)}
