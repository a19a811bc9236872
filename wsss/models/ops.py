"""Operations whose backward pass is deterministic on CUDA, in place of ones that are not.

Under `compute.deterministic` torch refuses ops without a deterministic CUDA implementation; two of
the pipeline's would be refused (bilinear upsampling's backward, NLLLoss) and scatter-style sums
depend on kernel choices. These replacements are built from matrix products and elementwise ops,
whose results are the same from run to run; they compute the same values as the torch functions
they replace (tests/test_determinism.py checks both), so the pipeline uses them always.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of 1-D linear interpolation as F.interpolate(align_corners=False) does it."""
    scale = in_size / out_size
    source = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    fraction = source - low
    rows = torch.arange(out_size)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix[rows, low] += 1 - fraction
    matrix[rows, high] += fraction
    return matrix


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, H, W) as two matrix products; equals
    F.interpolate(mode="bilinear", align_corners=False) without antialiasing, and its gradient is
    deterministic on CUDA."""
    height, width = size
    rows = _interpolation_matrix(height, x.shape[-2]).to(device=x.device, dtype=x.dtype)
    columns = _interpolation_matrix(width, x.shape[-1]).to(device=x.device, dtype=x.dtype)
    return rows @ x @ columns.T


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-pixel cross-entropy over labelled pixels, number of labelled pixels).

    logits (B, C, H, W), labels (B, H, W) with `ignore_index` for unlabelled pixels. The true class's
    log-probability is picked with a one-hot mask (NLLLoss has no deterministic CUDA kernel).
    Dividing the sum by the count gives F.cross_entropy(..., ignore_index) whenever a pixel is labelled.
    """
    labelled = labels != ignore_index
    one_hot = F.one_hot(labels.masked_fill(~labelled, 0), logits.shape[1]).permute(0, 3, 1, 2)
    picked = (F.log_softmax(logits, dim=1) * one_hot.to(logits.dtype)).sum(dim=1)
    return -(picked * labelled.to(logits.dtype)).sum(), labelled.sum()


def segment_sum(values: torch.Tensor, segments: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum of `values` (N, ...) per segment id (N,) in 0..num_segments-1: a one-hot matrix product, in place of
    index_add / scatter_add."""
    one_hot = F.one_hot(segments, num_segments).to(values.dtype)  # (N, S)
    return one_hot.T @ values.reshape(len(values), -1) if values.ndim > 1 else one_hot.T @ values


def select_rows(matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """matrix[index] (rows of an (M, D) matrix) as a one-hot matrix product, so its gradient is a plain
    matrix product too."""
    return F.one_hot(index, len(matrix)).to(matrix.dtype) @ matrix
