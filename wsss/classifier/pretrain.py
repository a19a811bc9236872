"""The built-in dataset's stand-in for ImageNet weights: a backbone pretrained on tags of other images.

The paper starts every classifier from ImageNet weights, so its features are meaningful from the
first iteration: every class is confidently recognised within the first epoch, the memory bank fills
with every class at once and the aggregation has centroids for all of them. Trained from scratch on
a few hundred images, RCA's modules instead start on features that do not yet tell the classes
apart. With `pretrain.images` > 0 the workflow first trains the plain classifier on the tags of a
separately generated set (same generator options, its seed derived from the config seed, no image
shared with the training split) and every experiment, the baseline included, starts from its
backbone. Only image-level tags are used, as in the rest of the pipeline. The settings of both steps
(torch-free, for the rules) are in `core/rules.py`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.artifacts import save_torch
from ..core.distributed import rank
from ..core.runtime import log
from ..data.voc import VOCLayout
from .train import train_classifier


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's tensors under the names the backbone itself uses (what `backbone.weights` loads)."""
    return {name[len("backbone."):]: tensor.detach().cpu().clone()
            for name, tensor in model.state_dict().items() if name.startswith("backbone.")}


def pretrain_backbone(dataset: str | Path | VOCLayout, settings: dict, backbone_path: str | Path,
                      model_path: str | Path, history_path: str | Path, checkpoint_dir: str | Path,
                      run_record: dict | None = None) -> dict:
    """Train the plain classifier on the pretraining set (resumable) and write its backbone's weights."""
    result = train_classifier(dataset, "train", settings, model_path, history_path, checkpoint_dir,
                              run_record=run_record)
    if rank() != 0:
        return result
    state = backbone_state(result["model"])
    save_torch(state, backbone_path)
    log.info("pretrained backbone (%d tensors, tag accuracy %.3f) written to %s", len(state),
             result["history"][-1]["tag_accuracy"], backbone_path)
    return result
