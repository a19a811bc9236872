"""Bad input, as a new user makes it: every case stops with an error naming the key or the file, before work
starts where that can be known then, and leaves nothing a rerun would take as done."""

import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, Killed, kill_after_first_checkpoint, snakemake, tiny_settings
from wsss.core.artifacts import ArtifactError, load_torch
from wsss.core.config import ConfigError, load_config, main as check_config, validate_config
from wsss.data.manifest import build_manifest
from wsss.data.voc import VOCLayout, write_label_png


@pytest.fixture
def dataset(tiny_dataset, tmp_path):
    """A copy of the tiny dataset to damage."""
    return shutil.copytree(tiny_dataset, tmp_path / "data")


def first(root, split="train"):
    return VOCLayout(root).names(split)[0]


def test_a_reversed_scale_range_is_refused_naming_the_key():
    for section in ("classifier", "segmentation"):
        with pytest.raises(ConfigError, match=rf"{section}\.scale_range \[1\.2, 0\.8\] is reversed"):
            validate_config({"dataset": {"name": "d", "root": "r"}, section: {"scale_range": [1.2, 0.8]}})


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 0\ndataset: {name: x\n  root: y\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:3:\d+: YAML syntax error"):
        load_config(path)
    assert check_config([str(path), str(tmp_path / "nothere.yaml")]) == 1
    printed = capsys.readouterr().out
    assert "broken.yaml:3:" in printed and "nothere.yaml does not exist" in printed


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["random bytes", "truncated", "a pickled list"])
def test_a_weights_file_that_is_not_a_state_dict_is_named(tmp_path, damage):
    path = tmp_path / "vgg16.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ArtifactError, match=r"weights file .*vgg16\.pth") as error:
        load_torch(path, "weights file")
    assert "weights_only" not in str(error.value)  # not torch's advice to load untrusted pickles


def test_a_name_listed_twice_in_a_split_is_refused_naming_file_and_lines(dataset):
    split_file = VOCLayout(dataset).split_file("train")
    names = split_file.read_text().splitlines()
    split_file.write_text("\n".join(names + [names[3]]) + "\n")
    with pytest.raises(ArtifactError, match=rf"train\.txt:{len(names) + 1}: '{names[3]}' is listed twice "
                                            rf"\(first on line 4\)"):
        build_manifest(dataset, ["train", "val"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_an_empty_split_is_refused_naming_its_list(dataset, split):
    VOCLayout(dataset).split_file(split).write_text("")
    with pytest.raises(ArtifactError, match=rf"split list .*{split}\.txt is empty"):
        build_manifest(dataset, ["train", "val"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_truncated_jpeg_is_found_before_any_training(dataset, split):
    path = VOCLayout(dataset).image_path(first(dataset, split))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=rf"{path.name} cannot be decoded \(truncated"):
        build_manifest(dataset, ["train", "val"])


def test_a_mask_of_the_wrong_size_is_named_with_its_image(dataset):
    path = VOCLayout(dataset).label_path(first(dataset))
    write_label_png(path, np.zeros((40, 50), np.uint8))
    with pytest.raises(ArtifactError, match=rf"{path.name}: size 50x40 differs from its image .*\(64x64\)"):
        build_manifest(dataset, ["train"])


def test_a_mask_value_outside_the_classes_is_named_with_the_value(dataset):
    path = VOCLayout(dataset).label_path(first(dataset))
    label = np.array(Image.open(path))
    label[0, 0] = 50
    write_label_png(path, label)
    with pytest.raises(ArtifactError, match=rf"{path.name}: label value\(s\) \[50\] outside the classes 0\.\.6"):
        build_manifest(dataset, ["train"])


def test_a_dataset_file_changed_after_indexing_is_named_and_the_index_dropped(dataset, tmp_path):
    from wsss.data.manifest import write_manifest
    from wsss.data.voc import open_layout

    manifest_path = tmp_path / "manifest.json"
    write_manifest(build_manifest(dataset, ["train"]), manifest_path)
    layout = open_layout(dataset, manifest_path)
    name = first(dataset)
    layout.image_path(name).write_bytes(VOCLayout(dataset).image_path(layout.names("train")[1]).read_bytes())
    with pytest.raises(ArtifactError, match=rf"{name}\.jpg changed after the dataset was indexed"):
        layout.read_image(name)
    assert not manifest_path.exists()  # the next run indexes the dataset again


def test_a_truncated_cam_shard_is_named_and_removed_for_the_next_run(tmp_path):
    from wsss.cams.store import CamWriter, gather_cams

    shard = tmp_path / "shard-0-of-1.h5"
    with CamWriter(shard) as writer:
        writer.write("a", np.ones((1, 64, 64), np.float32), [0])
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=r"shard-0-of-1\.h5: damaged CAM shard .*run the workflow again"):
        gather_cams([shard], tmp_path / "cams.h5")
    assert not shard.exists() and not (tmp_path / "cams.h5").exists()


def test_a_truncated_checkpoint_is_set_aside_and_training_restarts(tiny_dataset, tmp_path, monkeypatch, caplog):
    from wsss.classifier.train import train_classifier

    settings = tiny_settings()
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_classifier(tiny_dataset, "train", settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    checkpoint = tmp_path / "c" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    other = tiny_settings(classifier={"lr": 0.02})  # even with other settings: the file is not read blindly
    train_classifier(tiny_dataset, "train", other, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    assert f"checkpoint {checkpoint} set aside as last.pt.unreadable" in caplog.text
    assert (tmp_path / "m.pt").exists()


def test_a_trained_model_with_non_finite_weights_is_refused(tmp_path):
    from wsss.cams.extract import load_classifier
    from wsss.models.classifier import build_classifier

    settings = tiny_settings()["classifier"]
    model = build_classifier(settings, 3)
    state = model.state_dict()
    state["classifier.weight"][0, 0] = float("nan")
    torch.save({"model": state, "num_classes": 3, "settings": settings}, tmp_path / "model.pt")
    with pytest.raises(ArtifactError, match=r"model\.pt: tensor classifier\.weight holds values that are not finite"):
        load_classifier(tmp_path / "model.pt", torch.device("cpu"))


def test_a_scored_split_outside_the_training_split_or_missing_a_mask_is_named(dataset):
    layout = VOCLayout(dataset)
    train = layout.names("train")
    layout.split_file("scored").write_text("\n".join(train[:3] + ["val_000001"]) + "\n")
    specs = {"train": {"tags": True}, "scored": {"tags": False, "require_masks": True, "subset_of": "train"}}
    with pytest.raises(ArtifactError, match=r"split 'scored' .* has 1 images that are not in split 'train', "
                                            r"e.g. val_000001"):
        build_manifest(dataset, specs)
    layout.split_file("scored").write_text("\n".join(train[:3]) + "\n")
    layout.label_path(train[1]).unlink()
    with pytest.raises(ArtifactError, match=rf"{train[1]}\.png does not exist: split 'scored' is scored"):
        build_manifest(dataset, specs)


def test_a_held_out_split_sharing_an_image_with_a_training_or_tuning_split_is_refused(dataset):
    layout = VOCLayout(dataset)
    train, val = layout.names("train"), layout.names("val")
    layout.split_file("heldout").write_text("\n".join(val[:2] + [train[4]]) + "\n")
    specs = {"train": {"tags": True}, "val": {"tags": False}, "heldout": {"tags": False, "disjoint_from": ["train", "val"]}}
    with pytest.raises(ArtifactError, match=rf"split 'heldout' .* shares 1 images with split 'train', e.g. {train[4]}"):
        build_manifest(dataset, specs)
    layout.split_file("heldout").write_text("\n".join(val[:2]) + "\n")
    with pytest.raises(ArtifactError, match="shares 2 images with split 'val'"):
        build_manifest(dataset, specs)


def test_a_test_split_needs_no_masks_and_another_split_takes_its_masks_from_its_folder(dataset):
    layout = VOCLayout(dataset)
    for name in layout.names("val"):
        layout.label_path(name).rename(layout.root / "SegmentationClass" / f"{name}.unused")
    manifest = build_manifest(dataset, {"train": {"tags": True}, "val": {"tags": False}})
    assert manifest["splits"]["val"]["names"] == layout.names("val")
    (layout.root / "SegmentationClassAug").mkdir()
    name = first(dataset)
    shutil.copy(layout.label_path(name), layout.root / "SegmentationClassAug" / f"{name}.png")
    layout.split_file("aug").write_text(name + "\n")
    manifest = build_manifest(dataset, {"aug": {"tags": True, "masks": "SegmentationClassAug"}})
    assert manifest["mask_dirs"] == {"aug": "SegmentationClassAug"}
    assert f"SegmentationClassAug/{name}.png" in manifest["files"]


def test_a_failed_job_shows_its_error_on_the_console_not_only_in_its_log(tmp_path):
    """A download whose file does not match its pin: the job fails, and the sentence naming the file and both
    hashes is in Snakemake's console output as one line, with the log that holds the traceback."""
    import yaml

    config = yaml.safe_load((REPO / "config/voc2012_nosal.yaml").read_text())
    (tmp_path / "not-vgg16.pth").write_bytes(b"not the weights")
    config["downloads"]["vgg16-397923af.pth"]["url"] = (tmp_path / "not-vgg16.pth").as_uri()
    (tmp_path / "voc.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--configfile", "voc.yaml", "--", "resources/downloads/vgg16-397923af.pth")
    assert result.returncode != 0
    log = "results/logs/download-vgg16-397923af.pth.log"
    assert "Traceback (most recent call last)" in (tmp_path / log).read_text()
    console = result.stdout + result.stderr
    assert "DownloadError: downloads.vgg16-397923af.pth: vgg16-397923af.pth has sha256 " in console
    assert f"(traceback in {log})" in console
    assert "Traceback (most recent call last)" not in console and "wsss/data/sources/download.py" not in console
