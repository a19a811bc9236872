import pytest
import torch
import torchvision

from wsss.artifacts import ArtifactError
from wsss.models.backbones import ResNetOS8, VGG16OS8
from wsss.models.classifier import CAMClassifier
from wsss.models.deeplab import DeepLabV2


def test_vgg_backbone_has_output_stride_8():
    backbone = VGG16OS8(width=0.125)
    assert backbone(torch.zeros(1, 3, 96, 96)).shape == (1, 64, 12, 12)
    assert VGG16OS8(width=0.125)(torch.zeros(1, 3, 368, 368)).shape[2:] == (46, 46)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_torchvision_vgg16_weights_load_from_a_local_file(tmp_path, batch_norm):
    reference = (torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16)(weights=None)
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    backbone = VGG16OS8(batch_norm=batch_norm, weights=str(tmp_path / "vgg16.pth"))
    ours = backbone.state_dict()
    for key, value in ours.items():
        assert torch.equal(value, reference.state_dict()[key]), key
    assert backbone.out_channels == 512


def test_torchvision_resnet101_weights_load_from_a_local_file(tmp_path):
    reference = torchvision.models.resnet101(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r101.pth")
    backbone = ResNetOS8(layers=(3, 4, 23, 3), weights=str(tmp_path / "r101.pth"))
    assert torch.equal(backbone.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert backbone.layer3[1].conv2.dilation == (2, 2) and backbone.layer4[1].conv2.dilation == (4, 4)


def test_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ArtifactError, match="r50.pth"):
        ResNetOS8(layers=(3, 4, 23, 3), weights=str(tmp_path / "r50.pth"))
    with pytest.raises(ArtifactError, match="missing.pth does not exist"):
        VGG16OS8(weights=str(tmp_path / "missing.pth"))
    torch.save(VGG16OS8().state_dict(), tmp_path / "vgg_full_width.pth")
    with pytest.raises(ArtifactError, match="vgg_full_width.pth.*shape mismatch"):
        VGG16OS8(width=0.5, weights=str(tmp_path / "vgg_full_width.pth"))


def test_classifier_logits_are_the_pooled_cams():
    model = CAMClassifier(5, {"width": 0.125}, head_convs=1, head_channels=16).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["cams"].shape == (2, 5, 8, 8)
    torch.testing.assert_close(out["logits"], out["cams"].mean(dim=(2, 3)))
    groups = model.param_groups()
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in groups["new_weight"]) and groups["backbone_bias"]


def test_deeplab_v2_aspp_sums_four_dilated_branches():
    model = DeepLabV2(4, {"name": "resnet", "layers": [1, 1, 1, 1], "width_per_group": 8}).eval()
    assert [b.dilation for b in model.aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    x = torch.randn(1, 3, 64, 64)
    assert model(x).shape == (1, 4, 8, 8)
    features = model.backbone(x)
    torch.testing.assert_close(model(x), sum(branch(features) for branch in model.aspp.branches))
