"""DeepLab-v2: a ResNet at output stride 8 and ASPP, four parallel dilated 3x3 classifiers summed."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_resnet


class ASPP(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, rates=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate) for rate in rates)
        for branch in self.branches:
            nn.init.normal_(branch.weight, std=0.01)
            nn.init.zeros_(branch.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    def __init__(self, num_classes: int, backbone: dict, aspp_rates=(6, 12, 18, 24)):
        super().__init__()
        self.backbone = build_resnet(backbone)
        self.aspp = ASPP(self.backbone.out_channels, num_classes, aspp_rates)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at output stride 8; callers upsample to the label size."""
        return self.aspp(self.backbone(images))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"backbone": list(self.backbone.parameters()), "classifier": list(self.aspp.parameters())}


def build_deeplab(settings: dict, num_classes: int) -> DeepLabV2:
    return DeepLabV2(num_classes, settings["backbone"], settings["aspp_rates"])
