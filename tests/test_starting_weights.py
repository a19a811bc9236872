"""Starting weights checked while the plan is made, without torch (wsss/core/starting_weights.py, wsss/core/torch_file.py):
the shapes written out for the plan are the torch networks', and the check refuses what the training's loader
refuses, naming the config key and the file."""

import pickle

import numpy as np
import pytest
import torch
import torchvision

from test_models import CAFFE_BLOCKS, deeplab_pytorch_state
from wsss.core.artifacts import ArtifactError
from wsss.core.starting_weights import (OPTIONAL, check_weights_file, deeplab_pytorch_to_torchvision, resnet_shapes,
                                        vgg_shapes)
from wsss.core.torch_file import tensor_shapes
from wsss.models.backbones import ResNetOS8, VGG16OS8

TINY_VGG = {"name": "vgg16", "width": 0.125, "convs": [1, 1, 2, 1, 1], "batch_norm": True}


def shapes_of(state: dict) -> dict:
    return {key: tuple(value.shape) for key, value in state.items()}


@pytest.mark.parametrize("spec", [{}, {"batch_norm": True}, {"width": 0.125, "convs": (1, 1, 2, 1, 1), "batch_norm": True},
                                  {"width": 0.25, "convs": (2, 1, 3, 1, 2)}])
def test_the_vgg_shapes_are_those_of_the_network(spec):
    with torch.device("meta"):
        network = VGG16OS8(**spec)
    assert vgg_shapes(**spec) == shapes_of(network.state_dict())


@pytest.mark.parametrize("layers, width_per_group", [((3, 4, 23, 3), 64), ((3, 4, 6, 3), 64), ((1, 1, 1, 1), 8),
                                                     ((2, 1, 3, 1), 16)])
def test_the_resnet_shapes_are_those_of_torchvisions_network(layers, width_per_group):
    with torch.device("meta"):
        network = ResNetOS8(layers=layers, width_per_group=width_per_group)
    torchvision_names = {key.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): shape
                         for key, shape in shapes_of(network.state_dict()).items()}
    assert resnet_shapes(layers, width_per_group) == torchvision_names


def test_deeplab_pytorchs_names_are_renamed_to_torchvisions_resnet():
    """The plan renames the file's shapes with the function the loader renames its tensors with; the result is the
    torchvision ResNet's state (BatchNorm's optional counters aside), its classifier dropped."""
    state = deeplab_pytorch_state()
    expected = {key: shape for key, shape in resnet_shapes(CAFFE_BLOCKS).items() if not key.endswith(OPTIONAL)}
    assert deeplab_pytorch_to_torchvision(shapes_of(state), "coco.pth") == expected
    assert shapes_of(deeplab_pytorch_to_torchvision(state, "coco.pth")) == expected


@pytest.mark.parametrize("zip_format", [True, False])
def test_the_shapes_are_read_from_both_torch_formats(tmp_path, zip_format):
    state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "r50.pth"
    torch.save({"epoch": 3, "state_dict": state}, path, _use_new_zipfile_serialization=zip_format)
    shapes = tensor_shapes(path)
    assert shapes["epoch"] is None and shapes["state_dict"] == shapes_of(state)
    check_weights_file(path, "segmentation", {"name": "resnet50"})


def damaged(path, damage: str):
    torch.save(VGG16OS8(**{key: value for key, value in TINY_VGG.items() if key != "name"}).state_dict(), path,
               _use_new_zipfile_serialization=damage != "truncated legacy")
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif damage.startswith("truncated"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "a pickled list":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif damage == "a pickle that runs a command":
        path.write_bytes(b"cos\nsystem\n(S'touch " + str(path.parent / "ran").encode() + b"'\ntR.")
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["random bytes", "truncated", "truncated legacy", "a pickled list",
                                    "a pickle that runs a command"])
def test_an_unreadable_weights_file_is_refused_naming_the_key_and_the_file(tmp_path, damage):
    path = damaged(tmp_path / "vgg.pth", damage)
    with pytest.raises(ArtifactError, match=r"^classifier\.backbone\.weights: weights file \S*vgg\.pth is not a "
                                            r"readable torch file"):
        check_weights_file(path, "classifier", TINY_VGG)
    assert not (tmp_path / "ran").exists()  # read, never run
    with pytest.raises(ArtifactError, match=r"vgg\.pth"):  # what the training would have said, minutes later
        VGG16OS8(**{key: value for key, value in TINY_VGG.items() if key != "name"}, weights=str(path))


def weights_cases(tmp_path):
    """(file, section, backbone section) of weights the training's loader takes and of weights it refuses."""
    tiny_vgg = VGG16OS8(width=0.125, convs=(1, 1, 2, 1, 1), batch_norm=True).state_dict()
    without_counter = {key: value for key, value in tiny_vgg.items() if not key.endswith("num_batches_tracked")}
    missing = dict(tiny_vgg)
    del missing["features.0.weight"]
    r50 = torchvision.models.resnet50(weights=None).state_dict()
    files = {"vgg_tiny": tiny_vgg, "vgg_tiny_no_counters": without_counter, "vgg_missing": missing,
             "vgg_with_classifier": {**tiny_vgg, "classifier.0.weight": torch.zeros(4, 4)},
             "vgg_extra": {**tiny_vgg, "features.99.weight": torch.zeros(1)},
             "r50": r50, "coco": deeplab_pytorch_state()}
    for name, state in files.items():
        torch.save(state, tmp_path / f"{name}.pth")
    vgg = dict(TINY_VGG)
    caffe = {"name": "resnet", "layers": list(CAFFE_BLOCKS), "style": "caffe"}
    return [("vgg_tiny", "classifier", vgg, True), ("vgg_tiny_no_counters", "classifier", vgg, True),
            ("vgg_with_classifier", "classifier", vgg, True), ("vgg_missing", "classifier", vgg, False),
            ("vgg_extra", "classifier", vgg, False), ("vgg_tiny", "classifier", {**vgg, "width": 0.25}, False),
            ("vgg_tiny", "classifier", {**vgg, "batch_norm": False}, False),
            ("r50", "segmentation", {"name": "resnet50"}, True), ("r50", "segmentation", {"name": "resnet101"}, False),
            ("r50", "segmentation", {"name": "resnet50", "style": "caffe"}, False),
            ("coco", "segmentation", caffe, True), ("coco", "segmentation", {**caffe, "style": "torchvision"}, False),
            ("coco", "segmentation", {**caffe, "layers": [3, 4, 23, 3]}, False)]


def torch_loader_takes(path, section: str, backbone: dict) -> bool:
    build = {key: value for key, value in backbone.items() if key != "name"}
    try:
        if section == "classifier":
            VGG16OS8(**build, weights=str(path))
        else:
            layers = build.pop("layers", None)
            ResNetOS8(layers={"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}.get(backbone["name"], layers),
                      weights=str(path), **build)
    except ArtifactError:
        return False
    return True


def test_the_plan_refuses_exactly_what_the_training_refuses(tmp_path):
    for name, section, backbone, fits in weights_cases(tmp_path):
        path = tmp_path / f"{name}.pth"
        assert torch_loader_takes(path, section, backbone) == fits, (name, backbone)
        if fits:
            check_weights_file(path, section, backbone)
        else:
            with pytest.raises(ArtifactError, match=rf"^{section}\.backbone\.weights: weights file \S*{name}\.pth"):
                check_weights_file(path, section, backbone)
