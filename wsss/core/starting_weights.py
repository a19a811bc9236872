"""Starting weights checked while Snakemake plans, without torch: readable, and fitting the configured backbone.

`wsss/models/backbones.py` loads `classifier.backbone.weights` into VGG16OS8 and
`segmentation.backbone.weights` into ResNetOS8 when a training starts; a file it would refuse should
stop the run before any job, not after the jobs before the training. So this computes the names and
shapes of the backbone's tensors from its config section (the same networks, written out), reads the
file's names and shapes (`torch_file`) and refuses, naming the config key and the file, what
`load_torchvision_weights` refuses: missing, unexpected or misshapen tensors, or the other ResNet
layout than `segmentation.backbone.style` reads. The loader checks with the same functions and tables
(`fit_problems`, `in_layout_of_style`, the block counts), so the two cannot disagree on what fits;
`tests/test_starting_weights.py` holds the shapes written out here to those of the torch networks.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from .artifacts import ArtifactError
from .torch_file import tensor_shapes

VGG16_CONVS = (2, 2, 3, 3, 3)  # convolutions of VGG-16's five blocks
VGG_CHANNELS = (64, 128, 256, 512, 512)
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
BOTTLENECK_EXPANSION = 4
OPTIONAL = "num_batches_tracked"  # BatchNorm's counters, which converted files often lack


def batch_norm_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.{OPTIONAL}": ()}


def vgg_shapes(width: float = 1.0, batch_norm: bool = False, convs=VGG16_CONVS) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of VGG16OS8(width, batch_norm, convs): `features.N` as torchvision numbers them."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, in_channels = 0, 3
    for block, (count, channels) in enumerate(zip(convs, VGG_CHANNELS)):
        channels = max(1, round(channels * width))
        for _ in range(count):
            shapes.update({f"features.{index}.weight": (channels, in_channels, 3, 3),
                           f"features.{index}.bias": (channels,)})
            index += 1
            if batch_norm:
                shapes.update(batch_norm_shapes(f"features.{index}", channels))
                index += 1
            index += 1  # ReLU
            in_channels = channels
        if block < 4:
            index += 1  # max-pool (none after the fifth block)
    return shapes


def resnet_shapes(layers, width_per_group: int = 64) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of torchvision's ResNet of bottleneck blocks without its `fc` (ResNetOS8's `net`)."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **batch_norm_shapes("bn1", 64)}
    in_channels = 64
    for stage, count in enumerate(layers):
        planes = 64 * 2 ** stage
        middle, out_channels = int(planes * width_per_group / 64), planes * BOTTLENECK_EXPANSION
        for block in range(count):
            prefix = f"layer{stage + 1}.{block}"
            shapes.update({f"{prefix}.conv1.weight": (middle, in_channels, 1, 1),
                           **batch_norm_shapes(f"{prefix}.bn1", middle),
                           f"{prefix}.conv2.weight": (middle, middle, 3, 3), **batch_norm_shapes(f"{prefix}.bn2", middle),
                           f"{prefix}.conv3.weight": (out_channels, middle, 1, 1),
                           **batch_norm_shapes(f"{prefix}.bn3", out_channels)})
            if block == 0:  # every first block changes the channel count (and layer2's the stride)
                shapes.update({f"{prefix}.downsample.0.weight": (out_channels, in_channels, 1, 1),
                               **batch_norm_shapes(f"{prefix}.downsample.1", out_channels)})
            in_channels = out_channels
    return shapes


# deeplab-pytorch's names of a bottleneck's parts -> torchvision's
DEEPLAB_PYTORCH_PARTS = {"reduce.conv": "conv1", "reduce.bn": "bn1", "conv3x3.conv": "conv2", "conv3x3.bn": "bn2",
                         "increase.conv": "conv3", "increase.bn": "bn3", "shortcut.conv": "downsample.0",
                         "shortcut.bn": "downsample.1"}


def is_deeplab_pytorch(names) -> bool:
    return "layer1.conv1.conv.weight" in names


def deeplab_pytorch_to_torchvision(state: dict, path: Path) -> dict:
    """A ResNet's tensors (or their shapes: any name -> value mapping) in deeplab-pytorch's names (its
    `deeplabv1_resnet101-coco.pth`, converted from DeepLab's COCO-trained init.caffemodel) under torchvision's; its
    classifier (`fc.`, COCO's classes) is dropped. The plan renames shapes with it, the training's loader
    (`models/backbones.py`) tensors."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "fc":
            continue
        stem = parts[0] == "layer1" and parts[1:2] == ["conv1"]
        part = {"conv": "conv1", "bn": "bn1"}.get(parts[2]) if stem and len(parts) > 3 else (
            DEEPLAB_PYTORCH_PARTS.get(".".join(parts[2:4])))
        try:
            stage, block = int(parts[0].removeprefix("layer")) - 1, int(parts[1].removeprefix("block")) - 1
        except (ValueError, IndexError):
            stage = block = None
        if part is not None and stem:
            renamed[f"{part}.{'.'.join(parts[3:])}"] = value
            continue
        if part is None or stage is None or stage < 1:
            raise ArtifactError(f"weights file {path}: unexpected tensor {key} for deeplab-pytorch's ResNet")
        renamed[f"layer{stage}.{block}.{part}.{'.'.join(parts[4:])}"] = value
    return renamed


def backbone_shapes(section: str, backbone: dict) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """The tensors a backbone's weights file must hold, and the prefixes of those it may hold besides (the
    classification layer of the network it was trained in)."""
    if section == "classifier":
        return (vgg_shapes(backbone.get("width", 1.0), backbone.get("batch_norm", False),
                           tuple(backbone.get("convs", VGG16_CONVS))), ("classifier.",))
    layers = RESNET_LAYERS.get(backbone["name"], backbone.get("layers"))
    return resnet_shapes(layers, backbone.get("width_per_group", 64)), ("fc.",)


def in_layout_of_style(state: dict, style: str, path: Path) -> dict:
    """A ResNet file's tensors (or their shapes) under torchvision's names, for segmentation.backbone.style; the other
    layout refused."""
    if style == "caffe":
        if not is_deeplab_pytorch(state):
            raise ArtifactError(f"weights file {path} is not in deeplab-pytorch's layout (no layer1.conv1.conv.weight), "
                                f"which segmentation.backbone.style 'caffe' reads; torchvision's ResNet weights need "
                                f"style 'torchvision'")
        return deeplab_pytorch_to_torchvision(state, path)
    if is_deeplab_pytorch(state):
        raise ArtifactError(f"weights file {path} holds deeplab-pytorch's ResNet (DeepLab's Caffe layout, e.g. the "
                            f"COCO-pretrained deeplabv1_resnet101-coco.pth): set segmentation.backbone.style: caffe")
    return state


def fit_problems(found: dict, expected: dict, ignore_prefixes: tuple[str, ...]) -> str | None:
    """What keeps `found` (name -> shape) from loading into a network of `expected` shapes; None when it fits. The
    one check of both the plan (`check_weights_file`) and the training's loader (`backbones.load_torchvision_weights`).
    """
    found = {key: shape for key, shape in found.items() if not key.startswith(ignore_prefixes)}
    missing = [key for key in expected if key not in found and not key.endswith(OPTIONAL)]
    unexpected = [key for key in found if key not in expected]
    mismatched = [key for key in expected if key in found and found[key] != expected[key]]
    if missing or unexpected or mismatched:
        return f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}"
    return None


def check_weights_file(path: str | Path, section: str, backbone: dict) -> None:
    """Refuse, naming `<section>.backbone.weights` and the file, weights the training could not load into the
    backbone `backbone` (the config section); the tar format, which only torch reads, passes unread."""
    path = Path(path)
    key = f"{section}.backbone.weights"
    try:
        shapes = tensor_shapes(path, "weights file")
        if shapes is None:
            return
        if isinstance(shapes.get("state_dict"), dict):
            shapes = shapes["state_dict"]
        if section == "segmentation":
            shapes = in_layout_of_style(shapes, backbone.get("style", "torchvision"), path)
        expected, ignore_prefixes = backbone_shapes(section, backbone)
        problems = fit_problems(shapes, expected, ignore_prefixes)
        if problems:
            raise ArtifactError(f"weights file {path} does not fit the backbone: {problems}")
    except ArtifactError as error:
        raise ArtifactError(f"{key}: {error}") from None


@functools.lru_cache(maxsize=None)
def _checked(path: str, size: int, mtime_ns: int, section: str, backbone_json: str) -> None:
    check_weights_file(path, section, json.loads(backbone_json))


def check_starting_weights(path: str | os.PathLike, section: str, backbone: dict) -> None:
    """`check_weights_file` once per file state and backbone (Snakemake asks for a job's inputs more than once).
    A file that does not exist is left to the plan: Snakemake names a missing input, or a rule makes it."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return
    _checked(str(path), status.st_size, status.st_mtime_ns, section, json.dumps(backbone, sort_keys=True))
