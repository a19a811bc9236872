"""The built-in stand-in for ImageNet weights: a backbone pretrained on tags of a separately generated set."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_OPTIONS, tiny_settings
from wsss.classifier.pretrain import pretrain_backbone
from wsss.core.config import ConfigError, validate_config
from wsss.core.rules import pretrain_classifier_settings, pretrain_dataset_settings
from wsss.models.backbones import VGG16OS8


def pretrain_config(**pretrain):
    return validate_config({"seed": 5, "dataset": {"name": "tiny", "source": "synthetic", "root": "resources/tiny",
                                                   "synthetic": {"splits": {"train": 6, "val": 2},
                                                                 "options": TINY_OPTIONS}},
                            "classifier": {"backbone": {"width": 0.125, "batch_norm": True}, "epochs": 7,
                                           "rca": {"contrast": True, "aggregation": True}},
                            "pretrain": {"images": 5, **pretrain}})


def test_pretraining_is_refused_where_it_would_be_ignored_or_ambiguous():
    config = pretrain_config()
    with pytest.raises(ConfigError, match="pretrain.images.*dataset.source synthetic"):
        validate_config({**config, "dataset": {**config["dataset"], "source": "voc"}})
    both = {**config, "classifier": {**config["classifier"], "backbone": {"weights": "vgg16.pth"}}}
    with pytest.raises(ConfigError, match="classifier.backbone.weights"):
        validate_config(both)
    with pytest.raises(ConfigError, match="experiments"):  # results/<dataset>/pretrain/ is the backbone's
        validate_config({**config, "experiments": {"pretrain": {}}})


def test_the_pretraining_run_is_the_plain_classifier_on_its_own_set_and_seed():
    config = pretrain_config(epochs=3, lr=0.05)
    data = pretrain_dataset_settings(config)
    assert data["dataset"]["synthetic"]["splits"] == {"train": 5}
    # the dataset's options, with pretrain.options (other classes, markings often hidden) over them
    assert data["dataset"]["synthetic"]["options"] == {**config["dataset"]["synthetic"]["options"],
                                                       **config["pretrain"]["options"]}
    assert data["dataset"]["synthetic"]["options"]["class_set"] == "pretrain"
    assert data["seed"] != config["seed"]  # other images than the training split's ...
    assert data == pretrain_dataset_settings(pretrain_config(epochs=3, lr=0.05))  # ... fixed by the one seed
    assert data["seed"] != pretrain_dataset_settings({**config, "seed": 6})["seed"]
    classifier = pretrain_classifier_settings(config)["classifier"]
    assert classifier["epochs"] == 3 and classifier["lr"] == 0.05 and classifier["new_layer_lr_mult"] == 1.0
    assert not classifier["rca"]["contrast"] and not classifier["rca"]["aggregation"]
    assert classifier["backbone"] == {**config["classifier"]["backbone"], "weights": None}
    assert config["classifier"]["rca"]["contrast"]  # the shared section itself is untouched


def test_the_pretraining_set_shares_no_image_with_the_training_split(tmp_path):
    from wsss.data.sources.synthetic import generate_dataset

    config = pretrain_config()
    data = pretrain_dataset_settings(config)
    generate_dataset(tmp_path / "train", config["dataset"]["synthetic"]["splits"], config["seed"], TINY_OPTIONS)
    generate_dataset(tmp_path / "pre", data["dataset"]["synthetic"]["splits"], data["seed"], TINY_OPTIONS)
    train = [np.asarray(Image.open(path)) for path in sorted((tmp_path / "train/JPEGImages").glob("*"))]
    pre = [np.asarray(Image.open(path)) for path in sorted((tmp_path / "pre/JPEGImages").glob("*"))]
    assert len(pre) == 5 and len(train) == 8
    assert not any(a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 10 for a in pre for b in train)


def test_the_pretrained_backbone_loads_as_backbone_weights(tiny_dataset, tmp_path):
    settings = tiny_settings()
    result = pretrain_backbone(tiny_dataset, settings, tmp_path / "backbone.pt", tmp_path / "model.pt",
                               tmp_path / "history.json", tmp_path / "ckpt")
    assert len(result["history"]) == settings["classifier"]["epochs"]
    backbone = VGG16OS8(width=0.125, batch_norm=True, weights=str(tmp_path / "backbone.pt"))
    trained = result["model"].backbone.state_dict()
    assert all(torch.equal(tensor, trained[name]) for name, tensor in backbone.state_dict().items())
    assert not torch.equal(backbone.features[0].weight, VGG16OS8(width=0.125, batch_norm=True).features[0].weight)
