"""Inference-time ablation of RCA's semantic aggregation: a trained model's CAMs with the aggregate zeroed, the
weights untouched and nothing retrained.

`SemanticAggregation.forward` fuses [x ; F'] with F' = project(attention . centroids). Within `aggregate_zeroed`
the projection's output is replaced by zeros, so the refined head sees exactly what it saw before the first
k-means (F' zero); the backbone, the coarse head and every parameter and buffer stay as they are, and leaving the
context restores the model. The change of the refined CAMs then measures how much the trained model relies on
the aggregate (`docs/evaluation.md`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def _zero_output(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(output)


@contextlib.contextmanager
def aggregate_zeroed(model: nn.Module):
    """Within: the model's semantic aggregation adds a zero aggregate. A model without the aggregation is
    refused: its CAMs have nothing to ablate and would pass for ablated ones."""
    aggregation = getattr(model, "aggregation", None)
    if aggregation is None:
        raise ValueError("the model has no semantic aggregation to zero (rca.aggregation is off)")
    # A hook, not a changed buffer or weight: the state dict is the trained one even within the context.
    handle = aggregation.project.register_forward_hook(_zero_output)
    try:
        yield model
    finally:
        handle.remove()
