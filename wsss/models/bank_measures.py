"""What RCA's memory bank holds, measured for the classifier's history: measurements only, never in the loss.

- Purity of an entry: the share of its region's cells (the feature map's cells, `rca.region_masks` of the coarse
  CAMs of the augmented image) whose true label is the region's class. A cell's true label is the most frequent
  label of the augmented mask's pixels it covers (`cell_labels`); cells on the crop's padding are labelled 255,
  so they count against the purity. The bank keeps each entry's purity beside it (`RegionMemoryBank.purity`).
- Nearest-neighbour accuracy: the share of entries whose most cosine-similar other entry is of their class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rca import RegionMemoryBank, region_masks


@torch.no_grad()
def cell_labels(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) the most frequent label of each cell of a (B, H, W) label map cut into an h x w grid (the
    lowest label of equals)."""
    masks = masks.long()
    values = torch.unique(masks)
    shares = torch.stack([F.adaptive_avg_pool2d((masks == value).float()[:, None], size)[:, 0] for value in values],
                         dim=1)  # (B, V, h, w)
    return values[shares.argmax(1)]


@torch.no_grad()
def region_purity(coarse_cams: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(B, C) the share of each class's region (`region_masks` of the (B, C, h, w) CAMs) on cells labelled with
    the class (label 1 + c for class c); 0 for an empty region."""
    masks = region_masks(coarse_cams)
    labels = torch.arange(1, masks.shape[1] + 1, device=cells.device)
    on_class = (cells[:, None] == labels[None, :, None, None]).float()
    return (masks * on_class).sum(dim=(2, 3)) / masks.sum(dim=(2, 3)).clamp(min=1.0)


@torch.no_grad()
def nearest_neighbour_hits(entries: torch.Tensor, classes: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """(M,) whether each entry's most cosine-similar other entry has its class (leave-one-out 1-NN)."""
    points = F.normalize(entries.float(), dim=-1)
    hits = []
    for start in range(0, len(points), chunk):
        similarity = points[start:start + chunk] @ points.T
        rows = torch.arange(similarity.shape[0], device=points.device)
        similarity[rows, rows + start] = float("-inf")
        hits.append(classes[similarity.argmax(1)] == classes[start:start + chunk])
    return torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool, device=entries.device)


def mean_per_class(values: torch.Tensor, classes: torch.Tensor, num_classes: int) -> list[float | None]:
    """The mean of `values` over the entries of each class (None for a class without entries)."""
    return [float(values[classes == cls].double().mean()) if bool((classes == cls).any()) else None
            for cls in range(num_classes)]


def bank_summary(bank: RegionMemoryBank, with_purity: bool) -> dict:
    """The bank's entries per class, their nearest-neighbour accuracy and, `with_purity`, their mean purity:
    overall (over the entries) and per class."""
    entries, classes = bank.flat()
    summary = {"entries": len(classes),
               "entries_per_class": [int((classes == cls).sum()) for cls in range(bank.num_classes)]}
    if len(classes) > 1:
        hits = nearest_neighbour_hits(entries, classes)
        summary.update(nn_accuracy=float(hits.double().mean()),
                       nn_accuracy_per_class=mean_per_class(hits, classes, bank.num_classes))
    else:
        summary.update(nn_accuracy=None, nn_accuracy_per_class=[None] * bank.num_classes)
    if with_purity:
        purity = bank.purity[bank.filled]
        summary.update(purity=float(purity.double().mean()) if len(purity) else None,
                       purity_per_class=mean_per_class(purity, classes, bank.num_classes))
    return summary
