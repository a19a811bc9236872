import numpy as np
import pytest

from wsss.cams.store import CamWriter, gather_cams
from wsss.data.voc import IGNORE_INDEX, VOCLayout, read_label_png
from wsss.pseudo_labels.crf import dense_crf
from wsss.pseudo_labels.make import crf_label, make_pseudo_labels, saliency_label, seed_label
from wsss.pseudo_labels.store import read_label_index, write_label_index

from conftest import tiny_settings

CRF = tiny_settings()["crf"]


def two_region_image(size=40):
    """Left half red, right half blue."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = (200, 30, 30)
    image[:, size // 2:] = (30, 30, 200)
    return image


def test_crf_posteriors_are_distributions_that_snap_to_colour_edges():
    image = two_region_image()
    # a blurry, misplaced belief: class 1 probability ramps smoothly across the image
    ramp = np.tile(np.linspace(0.8, 0.2, 40), (40, 1)).astype(np.float32)
    probabilities = np.stack([1 - ramp, ramp])
    posterior = dense_crf(image, probabilities, CRF)
    assert posterior.shape == (2, 40, 40)
    np.testing.assert_allclose(posterior.sum(0), 1.0, atol=1e-4)
    label = posterior.argmax(0)
    assert (label[:, :20] == 1).mean() > 0.95 and (label[:, 20:] == 0).mean() > 0.95


def test_crf_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="differ"):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.ones((2, 5, 5), np.float32), CRF)


def test_seed_label_maps_channels_to_class_values():
    cams = np.zeros((2, 4, 4), np.float32)
    cams[0, 0, 0] = 0.9
    cams[1, 3, 3] = 0.6
    label = seed_label(cams, [2, 5], bg_threshold=0.5)
    assert label[0, 0] == 3 and label[3, 3] == 6 and (label == 0).sum() == 14


def test_crf_label_uses_only_background_and_tagged_classes():
    image = two_region_image()
    cams = np.zeros((1, 40, 40), np.float32)
    cams[0, 10:30, 5:15] = 1.0  # a partial seed inside the red half
    label = crf_label(image, cams, [4], {"bg_power": 4, "min_confidence": 0.0}, CRF)
    assert set(np.unique(label)) <= {0, 5}
    assert (label[:, :20] == 5).mean() > (label[:, 20:] == 5).mean()
    confident = crf_label(image, cams, [4], {"bg_power": 4, "min_confidence": 0.999}, CRF)
    assert (confident == IGNORE_INDEX).any()


def test_saliency_label_ignores_uncertain_background_and_tiny_foreground():
    image = two_region_image()
    cams = np.zeros((1, 40, 40), np.float32)
    cams[0, 10:30, 5:15] = 1.0
    saliency = np.zeros((40, 40), np.uint8)
    saliency[:, :20] = 255
    saliency[:, 20:25] = 100  # uncertain: salient but below half
    label = saliency_label(image, cams, [1], saliency, {"bg_power": 4}, CRF)
    assert set(np.unique(label)) <= {0, 2, IGNORE_INDEX}
    assert (label[:, :20] == 2).mean() > 0.9
    assert (label[:, 20:25] == IGNORE_INDEX).all()
    assert (label[:, 30:] == 0).all()
    no_object = saliency_label(image, np.zeros((1, 40, 40), np.float32), [1], np.zeros((40, 40), np.uint8),
                               {"bg_power": 4}, CRF)
    assert (no_object == IGNORE_INDEX).all()


def fake_cams(layout, split, path):
    """CAMs that light each object's true mask, so pseudo labels can be checked against the truth."""
    tags = layout.tags(split)
    with CamWriter(path) as writer:
        for name, image_tags in tags.items():
            truth = read_label_png(layout.label_path(name))
            writer.write(name, np.stack([(truth == t + 1).astype(np.float32) for t in image_tags]), image_tags)


def test_sharded_pseudo_labels_cover_the_split_and_workers_agree(tiny_dataset, tmp_path):
    layout = VOCLayout(tiny_dataset)
    fake_cams(layout, "train", tmp_path / "shard.h5")
    gather_cams([tmp_path / "shard.h5"], tmp_path / "cams.h5")
    settings = tiny_settings()
    shards = []
    for shard in range(2):
        out = tmp_path / f"labels-{shard}"
        make_pseudo_labels(tmp_path / "cams.h5", tiny_dataset, "train", settings, out, shard, 2, workers=2)
        shards.append(out)
    single = tmp_path / "single"
    make_pseudo_labels(tmp_path / "cams.h5", tiny_dataset, "train", settings, single, 0, 2, workers=1)
    assert (single / "labels.sha256").is_file()
    for png in single.glob("*.png"):
        assert np.array_equal(read_label_png(png), read_label_png(shards[0] / png.name))
    assert write_label_index(shards, tmp_path / "index.txt") == len(layout.names("train"))
    index = read_label_index(tmp_path / "index.txt")
    assert set(index) == set(layout.names("train"))
    for name, path in index.items():
        label = read_label_png(path)
        allowed = {0, IGNORE_INDEX, *[t + 1 for t in layout.tags("train")[name]]}
        assert set(np.unique(label)) <= allowed
    with pytest.raises(FileExistsError):
        make_pseudo_labels(tmp_path / "cams.h5", tiny_dataset, "train", settings, single, 0, 2, workers=1)
