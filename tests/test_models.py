import pytest
import torch
import torch.nn.functional as F
import torchvision

from wsss.core.artifacts import ArtifactError
from wsss.data.datasets import normalize
from wsss.models.backbones import CaffeInput, ResNetOS8, VGG16OS8, vgg_receptive_field
from wsss.models.classifier import CAMClassifier
from wsss.models.deeplab import DeepLabV2


def test_vgg_backbone_has_output_stride_8():
    backbone = VGG16OS8(width=0.125)
    assert backbone(torch.zeros(1, 3, 96, 96)).shape == (1, 64, 12, 12)
    assert VGG16OS8(width=0.125)(torch.zeros(1, 3, 368, 368)).shape[2:] == (46, 46)


@pytest.mark.parametrize("convs", [(2, 2, 3, 3, 3), (1, 1, 2, 1, 1)])
def test_the_stated_receptive_field_is_where_an_output_cell_sees(convs):
    """vgg_receptive_field against the network itself: the input pixels an output cell's gradient reaches."""
    torch.manual_seed(0)
    backbone = VGG16OS8(width=0.125, convs=convs).eval()
    for index, module in enumerate(backbone.features):
        if isinstance(module, torch.nn.Conv2d):  # positive weights: no gradient cancels out inside the field
            torch.nn.init.uniform_(module.weight, 0.01, 0.1)
            torch.nn.init.constant_(module.bias, 0.1)
        elif isinstance(module, torch.nn.MaxPool2d):  # the same window, but every pixel of it passes a gradient
            backbone.features[index] = torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                                          module.ceil_mode)
    image = torch.ones(1, 3, 256, 256, requires_grad=True)
    out = backbone(image)
    out[0, :, 16, 16].sum().backward()
    seen = image.grad[0].abs().sum(0) > 0
    rows, columns = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == int(columns.max() - columns.min() + 1) == vgg_receptive_field(convs)
    assert vgg_receptive_field() == 204 and vgg_receptive_field((1, 1, 2, 1, 1)) == 94


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


CAFFE_BLOCKS = (2, 1, 2, 1)  # blocks per stage: each stage's first block and a later one


def deeplab_pytorch_state(blocks=CAFFE_BLOCKS, coco_classes=91):
    """Random weights named as deeplab-pytorch names its ResNet (deeplabv1_resnet101-coco.pth), written out here
    from its layout: layer1.conv1 the stem, layer2..layer5 the stages of blockN.{reduce,conv3x3,increase,
    shortcut}.{conv,bn}, fc the COCO classifier."""
    generator = torch.Generator().manual_seed(0)
    state = {}

    def conv_bn(prefix, out_channels, in_channels, kernel):
        state[f"{prefix}.conv.weight"] = torch.randn(out_channels, in_channels, kernel, kernel, generator=generator) \
            * (2 / (in_channels * kernel * kernel)) ** 0.5
        state[f"{prefix}.bn.weight"] = 1 + 0.1 * torch.randn(out_channels, generator=generator)
        state[f"{prefix}.bn.bias"] = 0.1 * torch.randn(out_channels, generator=generator)
        state[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(out_channels, generator=generator)
        state[f"{prefix}.bn.running_var"] = 1 + torch.rand(out_channels, generator=generator)

    conv_bn("layer1.conv1", 64, 3, 7)
    in_channels = 64
    for stage, count in enumerate(blocks):
        middle, out_channels = 64 * 2 ** stage, 256 * 2 ** stage
        for block in range(1, count + 1):
            prefix = f"layer{stage + 2}.block{block}"
            conv_bn(f"{prefix}.reduce", middle, in_channels, 1)
            conv_bn(f"{prefix}.conv3x3", middle, middle, 3)
            conv_bn(f"{prefix}.increase", out_channels, middle, 1)
            if block == 1:
                conv_bn(f"{prefix}.shortcut", out_channels, in_channels, 1)
            in_channels = out_channels
    state["fc.weight"] = torch.randn(coco_classes, 2048, 1, 1, generator=generator)
    state["fc.bias"] = torch.zeros(coco_classes)
    return state


def deeplab_pytorch_forward(state, caffe_image, blocks=CAFFE_BLOCKS):
    """deeplab-pytorch's DeepLab-v2 ResNet as functional ops: stride on the 1x1 reduce, every block of the 3rd and
    4th stages dilated 2 and 4, the stem's max-pool 3x3 stride 2 padding 1 rounding up; eval-mode BatchNorm."""
    def conv_bn(x, prefix, stride=1, padding=0, dilation=1, relu=True):
        x = F.conv2d(x, state[f"{prefix}.conv.weight"], stride=stride, padding=padding, dilation=dilation)
        x = F.batch_norm(x, state[f"{prefix}.bn.running_mean"], state[f"{prefix}.bn.running_var"],
                         state[f"{prefix}.bn.weight"], state[f"{prefix}.bn.bias"], eps=1e-5)
        return F.relu(x) if relu else x

    x = F.max_pool2d(conv_bn(caffe_image, "layer1.conv1", stride=2, padding=3), 3, 2, 1, ceil_mode=True)
    for stage, (count, stride, dilation) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4))):
        for block in range(1, count + 1):
            prefix, first = f"layer{stage + 2}.block{block}", block == 1
            h = conv_bn(x, f"{prefix}.reduce", stride=stride if first else 1)
            h = conv_bn(h, f"{prefix}.conv3x3", padding=dilation, dilation=dilation)
            h = conv_bn(h, f"{prefix}.increase", relu=False)
            x = F.relu(h + (conv_bn(x, f"{prefix}.shortcut", stride=stride, relu=False) if first else x))
    return x


def test_caffe_style_resnet_runs_deeplabs_coco_weights_as_deeplab_pytorch_does(tmp_path):
    state = deeplab_pytorch_state()
    torch.save(state, tmp_path / "deeplabv1_resnet101-coco.pth")
    backbone = ResNetOS8(layers=CAFFE_BLOCKS, weights=str(tmp_path / "deeplabv1_resnet101-coco.pth"),
                         style="caffe").eval()
    rgb = torch.rand(1, 3, 45, 53, generator=torch.Generator().manual_seed(1))
    caffe_image = rgb.flip(1) * 255 - torch.tensor([104.008, 116.669, 122.675]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, reference = backbone(normalize(rgb)), deeplab_pytorch_forward(state, caffe_image)
    assert ours.shape == reference.shape == (1, 2048, 6, 7)
    scale = float(reference.abs().max())  # float rounding grows with the activations' scale
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(CaffeInput()(normalize(rgb)), caffe_image, rtol=1e-5, atol=1e-3)
    # the torchvision layout gives other numbers from the same weights: the test sees the layout
    torchvision_layout = ResNetOS8(layers=CAFFE_BLOCKS, style="torchvision").eval()
    torchvision_layout.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        assert not torch.allclose(torchvision_layout(normalize(rgb)), reference, atol=1e-2 * scale)


def test_weights_of_the_other_layout_are_refused_naming_the_style_to_set(tmp_path):
    torch.save(deeplab_pytorch_state(), tmp_path / "coco.pth")
    with pytest.raises(ArtifactError, match="coco.pth.*style: caffe"):
        ResNetOS8(layers=CAFFE_BLOCKS, weights=str(tmp_path / "coco.pth"))
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(ArtifactError, match="imagenet.pth.*style 'torchvision'"):
        ResNetOS8(layers=(3, 4, 23, 3), weights=str(tmp_path / "imagenet.pth"), style="caffe")
