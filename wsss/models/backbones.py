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

from ..core.artifacts import ArtifactError, load_torch
from ..core.starting_weights import OPTIONAL, RESNET_LAYERS, VGG16_CONVS, VGG_CHANNELS, fit_problems, in_layout_of_style


def load_torchvision_weights(module: nn.Module, path: str | Path, ignore_prefixes: tuple[str, ...] = (),
                             convert=None) -> None:
    """Load a torchvision state dict from a local file into `module`; every backbone tensor must match.

    `convert(state, path) -> state` renames another layout's tensors to torchvision's first. BatchNorm's
    `num_batches_tracked` counters, which converted files often lack, are not required. The check is the plan's
    (`core.starting_weights.fit_problems`), on the tensors' shapes."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"weights file {path} does not exist (weights are read from disk, never downloaded "
                            f"at run time)")
    state = load_torch(path, "weights file")
    if "state_dict" in state:
        state = state["state_dict"]
    if convert is not None:
        state = convert(state, path)
    state = {key: value for key, value in state.items() if not key.startswith(ignore_prefixes)}
    own = {key: value for key, value in module.state_dict().items() if not key.startswith(ignore_prefixes)}
    problems = fit_problems({key: tuple(value.shape) for key, value in state.items()},
                            {key: tuple(value.shape) for key, value in own.items()}, ignore_prefixes)
    if problems:
        raise ArtifactError(f"weights file {path} does not fit the backbone: {problems}")
    state.update({key: own[key] for key in own if key.endswith(OPTIONAL) and key not in state})
    module.load_state_dict(state, strict=not ignore_prefixes)


class VGG16OS8(nn.Module):
    """VGG-16 features at output stride 8; `features` indices match torchvision's vgg16 / vgg16_bn.

    `convs`: the convolutions of each of the five blocks (VGG-16's by default, which ImageNet weights need); fewer
    give a shallower network with a smaller receptive field (`vgg_receptive_field`)."""

    def __init__(self, width: float = 1.0, batch_norm: bool = False, weights: str | None = None,
                 convs: tuple[int, ...] = VGG16_CONVS):
        super().__init__()
        if len(convs) != 5 or min(convs) < 1:
            raise ValueError(f"classifier.backbone.convs must give 5 blocks of at least one convolution, got {convs}")
        layers: list[nn.Module] = []
        in_channels = 3
        for block, (count, channels) in enumerate(zip(convs, VGG_CHANNELS)):
            channels = max(1, round(channels * width))
            dilation = 2 if block == 4 else 1
            for _ in range(count):
                layers.append(nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(channels))
                layers.append(nn.ReLU(inplace=True))
                in_channels = channels
            if block < 3:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            elif block == 3:  # pool4 at stride 1; pool5 dropped
                layers.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))
        self.features = nn.Sequential(*layers)
        self.out_channels = in_channels
        if weights:  # ImageNet weights need width 1.0; a narrower backbone loads weights of its own width
            load_torchvision_weights(self, weights, ignore_prefixes=("classifier.",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def vgg_receptive_field(convs: tuple[int, ...] = VGG16_CONVS) -> int:
    """The theoretical receptive field, in input pixels, of a cell of VGG16OS8's output."""
    field, jump = 1, 1
    for block, count in enumerate(convs):
        dilation = 2 if block == 4 else 1
        field += count * 2 * dilation * jump  # 3x3 convolutions
        if block < 3:
            field, jump = field + jump, jump * 2  # 2x2 max-pool, stride 2
        elif block == 3:
            field += 2 * jump  # 3x3 max-pool, stride 1
    return field


class CaffeInput(nn.Module):
    """Turns the pipeline's images (RGB in [0, 1], ImageNet-normalised) into what Caffe-trained ResNets expect:
    BGR in [0, 255] minus DeepLab's mean colour, without division by a deviation."""

    CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)

    def __init__(self):
        super().__init__()
        from ..data.datasets import IMAGENET_MEAN, IMAGENET_STD

        self.register_buffer("scale", (255 * IMAGENET_STD).flip(0).view(1, 3, 1, 1), persistent=False)
        shift = 255 * IMAGENET_MEAN.flatten().flip(0) - torch.tensor(self.CAFFE_MEAN_BGR)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * self.scale + self.shift


class ResNetOS8(nn.Module):
    """torchvision ResNet (bottleneck blocks) without pooling/fc, layer3/4 dilated: output stride 8.

    style "torchvision": torchvision's ResNet, for its ImageNet weights. style "caffe": the MSRA/Caffe layout of
    DeepLab's own ResNet-101, for the COCO-pretrained weights the DeepLab-v2 papers start from: a block's
    stride on its first 1x1 convolution, the stem's max-pool padded by 1 and rounding up, the first block of
    each dilated stage dilated like the others (torchvision's keeps the previous rate there), and Caffe's input
    (`CaffeInput`); its weights as deeplab-pytorch converts them (`core.starting_weights.in_layout_of_style`).
    """

    def __init__(self, layers=(3, 4, 23, 3), width_per_group: int = 64, weights: str | None = None,
                 style: str = "torchvision"):
        super().__init__()
        if style not in ("torchvision", "caffe"):
            raise ValueError(f"segmentation.backbone.style must be 'torchvision' or 'caffe', got {style!r}")
        net = ResNet(Bottleneck, list(layers), width_per_group=width_per_group,
                     replace_stride_with_dilation=[False, True, True])
        self.input = CaffeInput() if style == "caffe" else nn.Identity()
        if style == "caffe":
            net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
            block = net.layer2[0]  # layer3 and layer4 are dilated, not strided
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
            for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):  # every block dilated, the first too
                layer[0].conv2.dilation = layer[0].conv2.padding = (dilation, dilation)
        if weights:
            load_torchvision_weights(net, weights, ignore_prefixes=("fc.",),
                                     convert=lambda state, path: in_layout_of_style(state, style, path))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = 512 * Bottleneck.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(self.input(x))))))


def build_resnet(spec: dict) -> ResNetOS8:
    """A ResNetOS8 from a config `backbone` section (name resnet50/resnet101, or resnet with layers)."""
    layers = RESNET_LAYERS.get(spec["name"], spec.get("layers"))
    return ResNetOS8(layers=layers, width_per_group=spec.get("width_per_group", 64), weights=spec.get("weights"),
                     style=spec.get("style", "torchvision"))


def build_vgg(spec: dict) -> VGG16OS8:
    return VGG16OS8(width=spec.get("width", 1.0), batch_norm=spec.get("batch_norm", False),
                    convs=tuple(spec.get("convs", VGG16_CONVS)),
                    weights=spec.get("weights"))
