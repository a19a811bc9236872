"""The classification network whose class activation maps seed the pseudo labels.

The baseline is the plain CAM network: backbone features x, an optional stack of 3x3 convs, a 1x1
classifier applied at every location (the CAM P), and global average pooling of P as the logits
(multi-label soft margin loss). RCA's modules attach to the same `features` and `cams` outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_vgg


class CAMClassifier(nn.Module):
    def __init__(self, num_classes: int, backbone: dict, head_convs: int = 0, head_channels: int = 512):
        super().__init__()
        self.backbone = build_vgg(backbone)
        layers: list[nn.Module] = []
        channels = self.backbone.out_channels
        for _ in range(head_convs):
            layers += [nn.Conv2d(channels, head_channels, 3, padding=1), nn.ReLU(inplace=True)]
            channels = head_channels
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.num_classes = num_classes
        for module in [*self.head, self.classifier]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        cams = self.classifier(self.head(features))
        return {"features": features, "cams": cams, "logits": cams.mean(dim=(2, 3))}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group: backbone vs new layers, weights vs biases (and norms)."""
        groups = {"backbone_weight": [], "backbone_bias": [], "new_weight": [], "new_bias": []}
        for name, param in self.named_parameters():
            origin = "backbone" if name.startswith("backbone.") else "new"
            kind = "weight" if param.ndim > 1 else "bias"
            groups[f"{origin}_{kind}"].append(param)
        return groups


def build_classifier(settings: dict, num_classes: int) -> CAMClassifier:
    return CAMClassifier(num_classes, settings["backbone"], settings["head_convs"], settings["head_channels"])
