"""Output-stride-8 backbones whose parameter names match torchvision's, so ImageNet weights load from a file.

VGG-16 (the classification stage): pool4 becomes a 3x3 stride-1 pool, pool5 is dropped and conv5 is
dilated by 2, as in the RCA/OAA/EPS code. ResNet (DeepLab-v2): torchvision's ResNet with the last two
stages dilated instead of strided.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

# torchvision's VGG-16 layout: channels of each conv, "M" a max-pool
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def load_torchvision_weights(module: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a torchvision state dict from a local file into `module`; every backbone tensor must match."""
    from ..artifacts import ArtifactError, load_torch

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"weights file {path} does not exist (weights are read from disk, never downloaded "
                            f"at run time)")
    state = load_torch(path, "weights file")
    if "state_dict" in state:
        state = state["state_dict"]
    state = {key: value for key, value in state.items() if not key.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [key for key in own if key in state and own[key].shape != state[key].shape]
    if missing or unexpected or mismatched:
        raise ArtifactError(f"weights file {path} does not fit the backbone: missing {missing[:5]}, unexpected "
                            f"{unexpected[:5]}, shape mismatch {mismatched[:5]}")
    module.load_state_dict(state)


class VGG16OS8(nn.Module):
    """VGG-16 features at output stride 8; `features` indices match torchvision's vgg16 / vgg16_bn."""

    def __init__(self, width: float = 1.0, batch_norm: bool = False, weights: str | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, pools_seen = 3, 0
        for item in VGG16_LAYOUT:
            if item == "M":
                pools_seen += 1
                if pools_seen == 4:
                    layers.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))
                elif pools_seen < 4:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            channels = max(1, round(item * width))
            dilation = 2 if pools_seen == 4 else 1
            layers.append(nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation))
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.out_channels = in_channels
        if weights:  # ImageNet weights need width 1.0; a narrower backbone loads weights of its own width
            load_torchvision_weights(self, weights, ignore_prefixes=("classifier.",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ResNetOS8(nn.Module):
    """torchvision ResNet (bottleneck blocks) without pooling/fc, layer3/4 dilated: output stride 8."""

    def __init__(self, layers=(3, 4, 23, 3), width_per_group: int = 64, weights: str | None = None):
        super().__init__()
        net = ResNet(Bottleneck, list(layers), width_per_group=width_per_group,
                     replace_stride_with_dilation=[False, True, True])
        if weights:
            load_torchvision_weights(net, weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = 512 * Bottleneck.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def build_resnet(spec: dict) -> ResNetOS8:
    """A ResNetOS8 from a config `backbone` section (name resnet50/resnet101, or resnet with layers)."""
    layers = RESNET_LAYERS.get(spec["name"], spec.get("layers"))
    return ResNetOS8(layers=layers, width_per_group=spec.get("width_per_group", 64), weights=spec.get("weights"))


def build_vgg(spec: dict) -> VGG16OS8:
    return VGG16OS8(width=spec.get("width", 1.0), batch_norm=spec.get("batch_norm", False),
                    weights=spec.get("weights"))
