"""The classification network whose class activation maps seed the pseudo labels.

Baseline (the plain CAM network): backbone features x, an optional stack of 3x3 convs, a 1x1
classifier applied at every location (the coarse CAM P) and global average pooling of P as the
logits. RCA (settings `rca`) adds on the same x:
- a projection head z and a regional memory bank (needed by both RCA modules);
- semantic contrast (a loss, see `classifier/rca_schedule.py`) when `rca.contrast`;
- semantic aggregation when `rca.aggregation`: the fused feature is classified by a shared 1x1
  classifier into the refined map O, whose pooled logits are the main output; P stays as an
  auxiliary (coarse) head. The refined head is `rca.refined_head_convs` 3x3 conv+ReLU layers
  (`head_channels` wide) before its 1x1 classifier: 0 is the paper's single 1x1 classifier; giving
  it the coarse head's depth keeps a shallow network's two heads equally strong.
`cams`/`logits` of the output are O/s when the aggregation is on, P/s_coarse otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_vgg
from .rca import ProjectionHead, RegionMemoryBank, SemanticAggregation


def _init_conv(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def conv_stack(in_channels: int, convs: int, channels: int) -> tuple[nn.Sequential, int]:
    """`convs` 3x3 conv+ReLU layers `channels` wide (none: identity); returns it and its output width."""
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        in_channels = channels
    return nn.Sequential(*layers), in_channels


class CAMClassifier(nn.Module):
    def __init__(self, num_classes: int, backbone: dict, head_convs: int = 0, head_channels: int = 512,
                 rca: dict | None = None):
        super().__init__()
        rca = rca or {}
        self.backbone = build_vgg(backbone)
        self.head, channels = conv_stack(self.backbone.out_channels, head_convs, head_channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        # initialised before RCA's layers take their draws: the same start with or without them
        _init_conv(nn.ModuleList([self.head, self.classifier]))
        self.num_classes = num_classes
        self.uses_contrast = bool(rca.get("contrast"))
        self.uses_aggregation = bool(rca.get("aggregation"))
        self.projection = self.bank = self.aggregation = self.refined_head = self.refined_classifier = None
        if self.uses_contrast or self.uses_aggregation:
            width = self.backbone.out_channels
            self.projection = ProjectionHead(width, rca["embed_dim"])
            self.bank = RegionMemoryBank(num_classes, rca["bank_size"], rca["embed_dim"], rca["bank_update"],
                                         rca["bank_momentum"])
        if self.uses_aggregation:
            self.aggregation = SemanticAggregation(width, rca["embed_dim"], num_classes * rca["clusters"],
                                                   rca["aggregation_variant"], rca["aggregation_temperature"])
            self.refined_head, channels = conv_stack(width, rca.get("refined_head_convs", 0), head_channels)
            self.refined_classifier = nn.Conv2d(channels, num_classes, 1)
        _init_conv(nn.ModuleList([m for m in (self.projection, self.aggregation, self.refined_head,
                                              self.refined_classifier) if m is not None]))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        coarse_cams = self.classifier(self.head(features))
        out = {"features": features, "coarse_cams": coarse_cams, "coarse_logits": coarse_cams.mean(dim=(2, 3))}
        if self.projection is not None:
            out["embeddings"] = self.projection(features)
        if self.aggregation is not None:
            refined = self.refined_classifier(self.refined_head(self.aggregation(features, out["embeddings"])))
            out["refined_cams"], out["refined_logits"] = refined, refined.mean(dim=(2, 3))
        main = "refined" if self.aggregation is not None else "coarse"
        out["cams"], out["logits"] = out[f"{main}_cams"], out[f"{main}_logits"]
        return out

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: backbone vs new layers, weights vs biases (and norms)."""
        groups = {"backbone_weight": [], "backbone_bias": [], "new_weight": [], "new_bias": []}
        for name, param in self.named_parameters():
            origin = "backbone" if name.startswith("backbone.") else "new"
            kind = "weight" if param.ndim > 1 else "bias"
            groups[f"{origin}_{kind}"].append(param)
        return groups


def build_classifier(settings: dict, num_classes: int) -> CAMClassifier:
    return CAMClassifier(num_classes, settings["backbone"], settings["head_convs"], settings["head_channels"],
                         settings.get("rca"))
