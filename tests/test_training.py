import json

import h5py
import numpy as np
import pytest
import torch

from wsss.cams.extract import extract_cams, multiscale_cams
from wsss.cams.store import cam_names, gather_cams, read_cams
from wsss.classifier.train import train_classifier
from wsss.data.voc import VOCLayout, read_label_png
from wsss.evaluation.evaluate import evaluate_cams, evaluate_label_maps
from wsss.segmentation.predict import class_probabilities, predict
from wsss.segmentation.train import train_segmentation

from conftest import Killed, kill_after_first_checkpoint, tiny_settings


def state_of(path):
    return torch.load(path, weights_only=False)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def trained_classifier(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    train_classifier(tiny_dataset, "train", tiny_settings(), out / "model.pt", out / "history.json", out / "ckpt")
    return out


def test_classifier_trains_and_resumes_to_identical_weights(tiny_dataset, trained_classifier, tmp_path, monkeypatch):
    history = json.loads((trained_classifier / "history.json").read_text())["epochs"]
    assert [record["epoch"] for record in history] == [0, 1]
    assert all(np.isfinite(record["loss"]) for record in history)
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_classifier(tiny_dataset, "train", tiny_settings(), tmp_path / "m.pt", tmp_path / "h.json",
                             tmp_path / "ckpt")
    assert not (tmp_path / "m.pt").exists()
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)["epoch"] == 0
    train_classifier(tiny_dataset, "train", tiny_settings(), tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "ckpt")
    assert_same_weights(state_of(tmp_path / "m.pt"), state_of(trained_classifier / "model.pt"))
    resumed = json.loads((tmp_path / "h.json").read_text())["epochs"]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in history]


def test_a_checkpoint_of_other_settings_is_set_aside(tiny_dataset, trained_classifier, tmp_path, monkeypatch, caplog):
    """A checkpoint from other settings must not be resumed: it is set aside, saying why, and training starts
    afresh."""
    three_epochs = tiny_settings(classifier={"epochs": 3})
    with monkeypatch.context() as patch:  # a run of the 2-epoch settings, killed after its first epoch
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_classifier(tiny_dataset, "train", tiny_settings(), tmp_path / "x.pt", tmp_path / "x.json",
                             tmp_path / "stale")
    train_classifier(tiny_dataset, "train", three_epochs, tmp_path / "m.pt", tmp_path / "h2.json",
                     tmp_path / "stale")
    assert "set aside as last.pt.stale: its settings differ" in caplog.text
    assert len(json.loads((tmp_path / "h2.json").read_text())["epochs"]) == 3
    train_classifier(tiny_dataset, "train", three_epochs, tmp_path / "fresh.pt", tmp_path / "h.json",
                     tmp_path / "fresh")
    assert_same_weights(state_of(tmp_path / "m.pt"), state_of(tmp_path / "fresh.pt"))


def test_multiscale_flip_cams_of_a_flipped_image_are_flipped():
    model = load_model_like()
    images = torch.randn(2, 3, 32, 32)
    cams = multiscale_cams(model, images, [1.0, 0.5], flip=True)
    flipped = multiscale_cams(model, images.flip(-1), [1.0, 0.5], flip=True)
    assert cams.shape == (2, 3, 32, 32) and (cams >= 0).all()
    torch.testing.assert_close(cams, flipped.flip(-1), rtol=1e-4, atol=1e-5)


def load_model_like():
    from wsss.models.classifier import CAMClassifier

    torch.manual_seed(0)
    return CAMClassifier(3, {"width": 0.125}).eval()


def test_cam_extraction_shards_batching_and_seed_evaluation(tiny_dataset, trained_classifier, tmp_path):
    settings = tiny_settings()
    model = trained_classifier / "model.pt"
    shards = [tmp_path / f"shard-{k}.h5" for k in range(2)]
    for k, shard in enumerate(shards):
        extract_cams(model, tiny_dataset, "train", settings, shard, k, 2)
    gather_cams(shards, tmp_path / "cams.h5")
    layout = VOCLayout(tiny_dataset)
    tags = layout.tags("train")
    assert sorted(cam_names(tmp_path / "cams.h5")) == sorted(tags)
    name = layout.names("train")[0]
    cams, cam_tags = read_cams(tmp_path / "cams.h5", name)
    assert cam_tags == tags[name]
    assert cams.shape == (len(tags[name]), 64, 64)
    peaks = cams.reshape(len(cam_tags), -1).max(1)
    assert cams.min() >= 0 and all(np.isclose(peak, 1.0, atol=1e-2) or peak == 0 for peak in peaks)
    # batching does not change the maps: one image a batch gives the same CAMs
    single = tiny_settings(cam={"batch_size": 1})
    extract_cams(model, tiny_dataset, "train", single, tmp_path / "single.h5", 0, 2)
    with h5py.File(tmp_path / "single.h5") as a, h5py.File(shards[0]) as b:
        for key in a:
            np.testing.assert_allclose(a[key][()], b[key][()], atol=2e-3)

    metrics = evaluate_cams(tmp_path / "cams.h5", tiny_dataset, "train", [0.1, 0.3, 0.5])
    assert [point["threshold"] for point in metrics["sweep"]] == [0.1, 0.3, 0.5]
    assert metrics["miou"] == max(point["miou"] for point in metrics["sweep"]) == metrics["oracle_miou"]
    assert metrics["threshold_chosen_on"] == "train"  # no threshold given: the oracle's, and the row says so
    assert len(metrics["confusion_matrix"]) == len(layout.class_names)
    # a threshold chosen elsewhere (on val): the row is that threshold's, the oracle stays beside it
    worst = min(metrics["sweep"], key=lambda point: point["miou"])
    chosen = evaluate_cams(tmp_path / "cams.h5", tiny_dataset, "train", [0.1, 0.3, 0.5], worst["threshold"], "val")
    assert (chosen["threshold"], chosen["threshold_chosen_on"], chosen["miou"]) == (worst["threshold"], "val",
                                                                                     worst["miou"])
    assert (chosen["oracle_threshold"], chosen["oracle_miou"]) == (metrics["oracle_threshold"], metrics["miou"])
    # a chosen threshold outside the sweep is scored too
    assert evaluate_cams(tmp_path / "cams.h5", tiny_dataset, "train", [0.1, 0.5], 0.3, "val")["miou"] == next(
        point["miou"] for point in metrics["sweep"] if point["threshold"] == 0.3)


def test_segmentation_trains_resumes_identically_and_predicts(tiny_dataset, tmp_path, monkeypatch):
    layout = VOCLayout(tiny_dataset)
    labels = {name: layout.label_path(name) for name in layout.names("train")}  # the oracle's labels
    settings = tiny_settings()
    train_segmentation(tiny_dataset, labels, settings, tmp_path / "full.pt", tmp_path / "h.json", tmp_path / "c1")
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_segmentation(tiny_dataset, labels, settings, tmp_path / "resumed.pt", tmp_path / "h2.json",
                               tmp_path / "c2")
    assert torch.load(tmp_path / "c2" / "last.pt", weights_only=False)["iteration"] == 3
    train_segmentation(tiny_dataset, labels, settings, tmp_path / "resumed.pt", tmp_path / "h2.json", tmp_path / "c2")
    assert_same_weights(state_of(tmp_path / "resumed.pt"), state_of(tmp_path / "full.pt"))

    paths = predict(tmp_path / "full.pt", tiny_dataset, "val", settings, tmp_path / "pred")
    assert set(paths) == set(layout.names("val"))
    prediction = read_label_png(next(iter(paths.values())))
    assert prediction.shape == (64, 64) and prediction.max() < len(layout.class_names)
    metrics = evaluate_label_maps(paths, tiny_dataset, "val", "segmentation")
    assert 0.0 <= metrics["miou"] <= 1.0
    # with the CRF: the same predictions whether one process or a pool of two CRF them
    crf = settings["segmentation"]["crf"]
    one = predict(tmp_path / "full.pt", tiny_dataset, "val", settings, tmp_path / "crf1", crf)
    pool = predict(tmp_path / "full.pt", tiny_dataset, "val", settings, tmp_path / "crf2", crf, workers=2)
    assert all(np.array_equal(read_label_png(one[name]), read_label_png(pool[name])) for name in one)


def tiny_deeplab():
    from wsss.models.deeplab import build_deeplab

    torch.manual_seed(0)
    settings = tiny_settings()["segmentation"]
    return build_deeplab({**settings, "backbone": {**settings["backbone"], "name": "resnet"}}, 4).eval()


@pytest.mark.parametrize("flip", [False, True])
def test_multiscale_prediction_fuses_the_per_scale_predictions(flip):
    """mean: the average of the per-scale (and flipped) softmax predictions, each resized to the image; max: the
    softmax of the pixel-wise maximum of those logits. Computed here by hand, one scale at a time."""
    model = tiny_deeplab()
    images = torch.randn(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    scales = (1.0, 0.5, 0.75)
    compute, device = {"precision": "fp32"}, torch.device("cpu")
    logits = []
    with torch.no_grad():
        for scale in scales:
            views = [images] + ([images.flip(-1)] if flip else [])
            for view_index, view in enumerate(views):
                scaled = torch.nn.functional.interpolate(view, size=(int(40 * scale), int(48 * scale)),
                                                         mode="bilinear", align_corners=False)
                out = torch.nn.functional.interpolate(model(scaled), size=(40, 48), mode="bilinear",
                                                      align_corners=False)
                logits.append(out.flip(-1) if view_index else out)
        mean = class_probabilities(model, images, compute, device, scales, flip, "mean")
        maximum = class_probabilities(model, images, compute, device, scales, flip, "max")
        single = class_probabilities(model, images, compute, device, (1.0,), False, "mean")
    by_hand_mean = torch.stack([out.softmax(1) for out in logits]).mean(0)
    by_hand_max = torch.stack(logits).max(0).values.softmax(1)
    torch.testing.assert_close(mean, by_hand_mean)
    torch.testing.assert_close(maximum, by_hand_max)
    torch.testing.assert_close(single, logits[0].softmax(1))
    assert not torch.allclose(mean, single, atol=1e-4)  # the other scales do count
    assert mean.shape == (2, 4, 40, 48)


def test_frozen_batchnorm_keeps_its_statistics_and_parameters(tiny_dataset, tmp_path):
    layout = VOCLayout(tiny_dataset)
    labels = {name: layout.label_path(name) for name in layout.names("train")}
    settings = tiny_settings(segmentation={"freeze_batchnorm": True, "iterations": 2, "checkpoint_every": 2})
    torch.manual_seed(0)
    train_segmentation(tiny_dataset, labels, settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "c")
    state = state_of(tmp_path / "m.pt")
    assert torch.all(state["backbone.stem.1.running_mean"] == 0) and torch.all(state["backbone.stem.1.weight"] == 1)
    assert not torch.all(state["aspp.branches.0.bias"] == 0)  # the rest did train


def test_experiments_share_initial_weights_and_differ_by_seed():
    """Rows of an ablation differ by their settings: shared layers start equal; another seed changes them."""
    from wsss.classifier.train import init_classifier

    plain = tiny_settings()["classifier"]
    rca = tiny_settings(classifier={"head_convs": 1, "head_channels": 16, "rca": {
        "contrast": True, "aggregation": True, "embed_dim": 16, "bank_size": 8, "clusters": 2}})["classifier"]
    plain = {**plain, "head_convs": 1, "head_channels": 16}
    cam_model, rca_model = init_classifier(plain, 0, 3), init_classifier(rca, 0, 3)
    other_seed = init_classifier(plain, 1, 3)
    shared = cam_model.state_dict()
    rca_state, other_state = rca_model.state_dict(), other_seed.state_dict()
    assert set(shared) < set(rca_state)
    for name, value in shared.items():
        assert torch.equal(value, rca_state[name]), name
    weights = [name for name in shared if name.endswith("weight") and shared[name].ndim == 4]
    assert not any(torch.equal(shared[name], other_state[name]) for name in weights)


def test_images_of_one_size_fill_whole_batches_even_when_mixed_with_others():
    from wsss.data.datasets import size_grouped_batches

    sizes = [(3, 4), (5, 6), (3, 4), (5, 6), (3, 4), (3, 4), (7, 7)]
    batches = size_grouped_batches(sizes, 2)
    assert batches == [[0, 2], [4, 5], [1, 3], [6]]
    assert sorted(index for batch in batches for index in batch) == list(range(len(sizes)))


def test_resizing_only_the_tagged_channels_gives_the_same_maps():
    from wsss.models.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier(tiny_settings()["classifier"], 6).eval()
    images = torch.rand(2, 3, 40, 48)
    every = multiscale_cams(model, images, [1.0, 0.5, 1.5], True)
    tagged = multiscale_cams(model, images, [1.0, 0.5, 1.5], True, classes=[4, 1])
    assert torch.equal(tagged, every[:, [4, 1]])


def test_one_loader_with_persistent_workers_serves_each_pass_its_own_batches(tiny_dataset):
    from wsss.data.datasets import ClassificationDataset, pass_loader, seeded_batches

    dataset = ClassificationDataset(VOCLayout(tiny_dataset), "train", 32)
    loader, batches = pass_loader(dataset, workers=2, pin_memory=False)
    seen = []
    for data_pass in range(2):
        batches.batches = seeded_batches(len(dataset), 4, data_pass)[:3]
        seen.append([seeds.tolist() for _, _, seeds in loader])
        assert seen[-1] == [[seed for _, seed in batch] for batch in batches.batches]  # this pass's, in order
    assert seen[0] != seen[1] and loader._iterator is not None  # the same workers, kept between passes
