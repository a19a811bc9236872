"""The deterministic mode: its switches, and the replacement ops (same values as torch's, bit-identical reruns)."""

import torch
import torch.nn.functional as F

from wsss.core.compute import compute_switches, configure_compute
from wsss.models.ops import cross_entropy_sum, resize_bilinear, segment_sum, select_rows
from wsss.models.rca import RegionMemoryBank, bank_partners, semantic_contrast_loss


def test_the_deterministic_mode_sets_every_switch_and_off_releases_them():
    threads = torch.get_num_threads()
    try:
        switches = configure_compute({"threads": 1, "deterministic": True})
        assert switches == compute_switches()  # what torch reports, not what was asked
        assert switches["deterministic_algorithms"] and switches["cudnn_deterministic"]
        assert not switches["cudnn_benchmark"] and not switches["tf32_matmul"] and not switches["tf32_cudnn"]
        assert switches["cublas_workspace_config"] in (":4096:8", ":16:8") and switches["threads"] == 1
        off = configure_compute({"threads": 2, "deterministic": False})
        assert not off["deterministic_algorithms"] and not off["cudnn_deterministic"] and off["cudnn_benchmark"]
        assert off["threads"] == 2
    finally:
        configure_compute({"threads": threads, "deterministic": True})


def test_matrix_product_upsampling_equals_bilinear_interpolation_with_its_gradient():
    generator = torch.Generator().manual_seed(0)
    for in_size, out_size in [((8, 8), (64, 64)), ((41, 41), (321, 321)), ((5, 7), (13, 3)), ((12, 12), (9, 9))]:
        x = torch.randn(2, 3, *in_size, dtype=torch.float64, generator=generator, requires_grad=True)
        weights = torch.randn(2, 3, *out_size, dtype=torch.float64, generator=generator)
        ours = resize_bilinear(x, out_size)
        (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
        reference = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
        (grad_reference,) = torch.autograd.grad((reference * weights).sum(), x)
        torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(grad_ours, grad_reference, rtol=0, atol=1e-12)


def test_one_hot_cross_entropy_equals_torch_with_ignored_pixels():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 6, 7, generator=generator, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 7), generator=generator)
    labels[0, :2] = 255
    total, count = cross_entropy_sum(logits, labels, 255)
    (grad,) = torch.autograd.grad(total / count, logits)
    reference = F.cross_entropy(logits, labels, ignore_index=255)
    (grad_reference,) = torch.autograd.grad(reference, logits)
    assert int(count) == 2 * 6 * 7 - 14
    torch.testing.assert_close(total / count, reference)
    torch.testing.assert_close(grad, grad_reference)


def test_segment_sum_and_row_selection_equal_index_add_and_indexing():
    values = torch.randn(7, 3)
    segments = torch.tensor([0, 2, 2, 1, 0, 2, 1])
    torch.testing.assert_close(segment_sum(values, segments, 3), torch.zeros(3, 3).index_add(0, segments, values))
    torch.testing.assert_close(segment_sum(values[:, 0], segments, 3),
                               torch.zeros(3).index_add(0, segments, values[:, 0]))
    index = torch.tensor([4, 0, 4, 6])
    torch.testing.assert_close(select_rows(values, index), values[index])


def contrast_step(seed: int):
    """The contrast loss and its gradient on the regions, from fixed inputs."""
    generator = torch.Generator().manual_seed(seed)
    bank = RegionMemoryBank(4, 6, 8)
    bank.update(F.normalize(torch.randn(20, 8, generator=generator), dim=1), torch.arange(20) % 4)
    regions = F.normalize(torch.randn(9, 8, generator=generator), dim=1).requires_grad_()
    classes = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    images = torch.tensor([0, 0, 1, 1, 2, 3, 3, 4, 4])
    partners = bank_partners(bank, [(i, 7) for i in range(9)], 8.0)
    loss = semantic_contrast_loss(regions, classes, images, partners, bank, 0.07)
    (grad,) = torch.autograd.grad(loss, regions)
    return loss.detach(), grad


def deeplab_step(seed: int):
    """DeepLab-v2's loss (upsampled logits, one-hot cross-entropy) and its gradient, from fixed inputs."""
    from wsss.segmentation.train import segmentation_loss

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 9, 9, generator=generator, requires_grad=True)
    labels = torch.randint(0, 6, (2, 65, 65), generator=generator)
    labels[:, :5] = 255
    loss = segmentation_loss(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def test_contrast_and_deeplab_losses_are_bit_identical_over_two_runs():
    threads = torch.get_num_threads()
    configure_compute({"threads": 2, "deterministic": True})
    try:
        for step in (contrast_step, deeplab_step):
            (loss_a, grad_a), (loss_b, grad_b) = step(3), step(3)
            assert torch.equal(loss_a, loss_b) and torch.equal(grad_a, grad_b), step.__name__
            assert torch.isfinite(grad_a).all() and grad_a.abs().sum() > 0
    finally:
        configure_compute({"threads": threads, "deterministic": True})
