"""The inference-time ablation of RCA's aggregation (wsss/cams/ablation.py): the refined CAMs change and nothing else; the
weights and the model after the context are the trained ones; a model without the aggregation is refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.cams.ablation import aggregate_zeroed
from wsss.cams.store import cam_names, read_cams
from wsss.core.artifacts import file_sha256
from wsss.models.classifier import CAMClassifier, build_classifier

from conftest import tiny_settings

RCA = {"contrast": True, "aggregation": True, "embed_dim": 8, "bank_size": 6, "bank_update": "fifo",
       "bank_momentum": 0.99, "clusters": 2, "aggregation_variant": "paper", "aggregation_temperature": 0.1}


def aggregating_model(num_classes: int = 3, **overrides) -> CAMClassifier:
    """A classifier whose aggregation has centroids (as after a k-means), in eval mode."""
    torch.manual_seed(0)
    model = CAMClassifier(num_classes, {"width": 0.125}, rca={**RCA, **overrides})
    model.aggregation.set_centroids(F.normalize(torch.randn(num_classes * RCA["clusters"], RCA["embed_dim"]), dim=1))
    return model.eval()


def cloned_state(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_state(model, state):
    assert model.state_dict().keys() == state.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("variant", ["paper", "public"])
@torch.no_grad()
def test_zeroing_the_aggregate_changes_the_refined_cams_and_nothing_else(variant):
    model = aggregating_model(aggregation_variant=variant)
    images = torch.randn(2, 3, 32, 32)
    trained = cloned_state(model)
    full = model(images)
    with aggregate_zeroed(model):
        ablated = model(images)
        assert_same_state(model, trained)  # no weight or buffer is changed to do it
    after = model(images)
    assert not torch.allclose(ablated["refined_cams"], full["refined_cams"], atol=1e-4)
    assert torch.equal(ablated["cams"], ablated["refined_cams"])  # the model's output is the refined map
    for key in ("features", "coarse_cams", "coarse_logits", "embeddings"):
        assert torch.equal(ablated[key], full[key]), key
    assert_same_state(model, trained)
    for key, value in full.items():  # leaving the context restores the model
        assert torch.equal(after[key], value), key
    # the ablated model is the trained one as it ran before its first k-means: F' zero
    model.aggregation.ready.fill_(False)
    assert torch.equal(model(images)["refined_cams"], ablated["refined_cams"])


def test_a_model_without_the_aggregation_is_refused():
    plain = CAMClassifier(3, {"width": 0.125}).eval()
    contrast_only = CAMClassifier(3, {"width": 0.125}, rca={**RCA, "aggregation": False})
    for model in (plain, contrast_only):
        with pytest.raises(ValueError, match="no semantic aggregation"):
            with aggregate_zeroed(model):
                pass


def saved_model(path, settings, model):
    torch.save({"model": model.state_dict(), "num_classes": model.num_classes, "settings": settings}, path)
    return path


def test_cams_extracted_with_the_aggregate_zeroed_differ_and_the_model_file_is_unchanged(tiny_dataset, tmp_path):
    from wsss.cams.extract import extract_cams
    from wsss.data.voc import VOCLayout

    num_classes = len(VOCLayout(tiny_dataset).class_names) - 1
    settings = tiny_settings(classifier={"rca": {"aggregation": True, "embed_dim": 8, "clusters": 2}})
    torch.manual_seed(0)
    model = build_classifier(settings["classifier"], num_classes)
    model.aggregation.set_centroids(F.normalize(torch.randn(num_classes * 2, 8), dim=1))
    path = saved_model(tmp_path / "rca.pt", settings["classifier"], model)
    digest = file_sha256(path)
    extract_cams(path, tiny_dataset, "val", settings, tmp_path / "full.h5")
    extract_cams(path, tiny_dataset, "val", settings, tmp_path / "ablated.h5", ablation="aggregation")
    extract_cams(path, tiny_dataset, "val", settings, tmp_path / "again.h5")
    assert file_sha256(path) == digest
    names = cam_names(tmp_path / "full.h5")
    assert sorted(cam_names(tmp_path / "ablated.h5")) == sorted(names)
    differ = 0
    for name in names:
        full, tags = read_cams(tmp_path / "full.h5", name)
        ablated, ablated_tags = read_cams(tmp_path / "ablated.h5", name)
        assert tags == ablated_tags and full.shape == ablated.shape
        differ += not np.allclose(full, ablated, atol=1e-3)
        np.testing.assert_array_equal(read_cams(tmp_path / "again.h5", name)[0], full)  # the full CAMs as before
    assert differ == len([name for name in names if read_cams(tmp_path / "full.h5", name)[1]])


def test_the_plain_cam_baseline_has_nothing_to_ablate_and_its_cams_stay(tiny_dataset, tmp_path):
    from wsss.cams.extract import extract_cams, multiscale_cams, normalise_per_class
    from wsss.data.datasets import InferenceDataset
    from wsss.data.voc import VOCLayout

    layout = VOCLayout(tiny_dataset)
    settings = tiny_settings()
    model = build_classifier(settings["classifier"], len(layout.class_names) - 1).eval()
    path = saved_model(tmp_path / "cam.pt", settings["classifier"], model)
    with pytest.raises(ValueError, match="no semantic aggregation"):
        extract_cams(path, tiny_dataset, "val", settings, tmp_path / "ablated.h5", ablation="aggregation")
    assert not (tmp_path / "ablated.h5").exists()
    extract_cams(path, tiny_dataset, "val", settings, tmp_path / "cams.h5")
    name = layout.names("val")[0]
    image, tags = InferenceDataset(layout, [name])[0][0], layout.tags("val")[name]
    expected = normalise_per_class(multiscale_cams(model, image[None], settings["cam"]["scales"],
                                                   settings["cam"]["flip"], classes=tags)[0])
    np.testing.assert_allclose(read_cams(tmp_path / "cams.h5", name)[0], expected.numpy(), atol=1e-3)
