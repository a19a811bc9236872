"""compute.precision and compute.channels_last on the CPU: the same networks within a stated tolerance, a contrast
loss that stays finite where plain fp16 overflows, training steps that run in bf16 and fp16 (with its scaler)."""

import pytest
import torch
import torch.nn.functional as F

from wsss.cams.extract import multiscale_cams
from wsss.classifier.rca_schedule import refresh_centroids
from wsss.classifier.train import train_one_epoch
from wsss.core.guards import FiniteGuard, NonFiniteError
from wsss.core.compute import autocast, grad_scaler
from wsss.models.classifier import build_classifier
from wsss.models.deeplab import build_deeplab
from wsss.models.rca import RegionMemoryBank, bank_partners, contrast_loss_per_query, semantic_contrast_loss

from conftest import tiny_settings

CPU = torch.device("cpu")


def rca_classifier():
    settings = tiny_settings(classifier={"rca": {"contrast": True, "aggregation": True, "embed_dim": 8,
                                                 "bank_size": 4, "clusters": 2}})["classifier"]
    torch.manual_seed(0)
    return build_classifier(settings, 4).eval()


def relative_error(approximate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approximate.float() - exact).abs().max() / exact.abs().max())


def test_channels_last_gives_the_same_classifier_and_deeplab_outputs():
    images = torch.rand(2, 3, 48, 40)
    classifier = rca_classifier()
    deeplab = build_deeplab(tiny_settings()["segmentation"], 5).eval()
    with torch.no_grad():
        expected = classifier(images)["cams"], deeplab(images)
        classifier.to(memory_format=torch.channels_last)
        deeplab.to(memory_format=torch.channels_last)
        fast = images.contiguous(memory_format=torch.channels_last)
        result = classifier(fast)["cams"], deeplab(fast)
    for got, want in zip(result, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_cams_stay_within_two_percent_of_fp32(precision):
    images = torch.rand(2, 3, 48, 48)
    model = rca_classifier()
    exact = multiscale_cams(model, images, [1.0, 0.5], True)
    approximate = multiscale_cams(model, images, [1.0, 0.5], True, {"precision": precision})
    assert approximate.dtype == torch.float32
    assert relative_error(approximate, exact) < 0.02, relative_error(approximate, exact)


def contrast_inputs(dtype):
    torch.manual_seed(3)
    bank = RegionMemoryBank(3, 4, 16)
    entries = F.normalize(torch.randn(12, 16), dim=-1)
    bank.update(entries, torch.arange(3).repeat(4))
    regions = F.normalize(torch.randn(5, 16), dim=-1)
    regions[:3] = F.normalize(entries[:3] + 0.1 * regions[:3], dim=-1)  # close to a bank entry, as trained ones are
    regions = regions.to(dtype)
    return regions, torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 0, 1, 2, 2]), bank


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_contrast_loss_runs_in_float32_under_autocast(precision):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    regions, classes, images, bank = contrast_inputs(dtype)
    seeds = [(k, 1) for k in range(len(regions))]
    with autocast({"precision": precision}, CPU):
        loss = semantic_contrast_loss(regions, classes, images, bank_partners(bank, seeds, 1.0), bank, 0.07)
    exact = semantic_contrast_loss(regions.float(), classes, images, bank_partners(bank, seeds, 1.0), bank, 0.07)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert float(loss) == float(exact)  # the same float32 arithmetic on the same (rounded) regions
    # what it guards against: at temperature 0.07 the per-pair loss of fp16 similarities overflows
    entries, entry_classes = bank.flat()
    naive = contrast_loss_per_query(regions.half(), classes, entries.half(), entry_classes, 0.07)
    assert not torch.isfinite(naive).all()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_rca_training_loop_runs_in_reduced_precision_with_a_float32_bank(precision):
    settings = tiny_settings(classifier={"rca": {"contrast": True, "aggregation": True, "embed_dim": 8,
                                                 "bank_size": 4, "clusters": 2}})["classifier"]
    model = rca_classifier().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    targets = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    loader = [(torch.rand(4, 3, 32, 32), targets, torch.arange(4))] * 3
    compute = {"precision": precision}
    record = train_one_epoch(model, loader, optimizer, CPU, 1, settings, FiniteGuard("t"), None, compute,
                             grad_scaler(compute, CPU))
    refresh_centroids(model, settings["rca"], 0)  # the aggregation on from here
    record = train_one_epoch(model, loader, optimizer, CPU, 2, settings, FiniteGuard("t"), None, compute,
                             grad_scaler(compute, CPU))
    assert record["contrast_loss"] > 0 and torch.isfinite(torch.tensor(record["loss"]))
    assert model.bank.entries.dtype == torch.float32 and int(model.bank.filled.sum()) >= 8


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_reduced_precision_training_step_keeps_float32_weights_and_learns(precision):
    compute = {"precision": precision}
    model = rca_classifier().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = grad_scaler(compute, CPU)
    assert scaler.is_enabled() == (precision == "fp16")
    images, targets = torch.rand(4, 3, 32, 32), torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    guard = FiniteGuard("test")
    losses = []
    for step in range(4):
        with autocast(compute, CPU):
            out = model(images)
        loss = F.multilabel_soft_margin_loss(out["logits"].float(), targets)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        losses.append(guard.check(loss, model.parameters(), str(step), gradient_overflow_allowed=scaler.is_enabled()))
        scaler.step(optimizer)
        scaler.update()
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert losses[-1] < losses[0]


def test_the_guard_lets_the_fp16_scaler_skip_an_overflowing_step_but_never_a_non_finite_loss():
    weight = torch.nn.Parameter(torch.ones(2))
    weight.grad = torch.tensor([float("inf"), 0.0])
    loss = torch.tensor(0.5)
    assert FiniteGuard("t").check(loss, [weight], "s", gradient_overflow_allowed=True) == 0.5
    with pytest.raises(NonFiniteError, match="gradient"):
        FiniteGuard("t").check(loss, [weight], "s")
    with pytest.raises(NonFiniteError, match="loss"):
        FiniteGuard("t").check(torch.tensor(float("nan")), [weight], "s", gradient_overflow_allowed=True)


AVX2_ONLY = ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\n"
             "processor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma f16c\n")
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
NEOVERSE_V2 = "processor\t: 0\nFeatures\t: fp asimd sve sve2 bf16 i8mm\n"


def test_native_bf16_is_told_from_the_cpu_flags_or_from_cuda():
    from wsss.core.compute import bf16_support, cpu_flags

    assert bf16_support("cpu", cpu_flags(AVX2_ONLY), None) == {
        "native": False, "evidence": "no avx512_bf16/amx_bf16 in /proc/cpuinfo flags"}
    assert bf16_support("cpu", cpu_flags(SAPPHIRE_RAPIDS), None) == {
        "native": True, "evidence": "amx_bf16/avx512_bf16 in /proc/cpuinfo flags"}
    assert bf16_support("cpu", cpu_flags(NEOVERSE_V2), None)["native"] is True
    assert bf16_support("cpu", cpu_flags("processor\t: 0\n"), None)["native"] is None  # unknown: no warning
    assert bf16_support("cuda", None, False)["native"] is False and bf16_support("cuda", None, True)["native"]


def test_bf16_without_native_support_is_warned_of_naming_the_cause():
    from wsss.core.compute import bf16_support, bf16_warning, cpu_flags

    without = bf16_support("cpu", cpu_flags(AVX2_ONLY), None)
    native = bf16_support("cpu", cpu_flags(SAPPHIRE_RAPIDS), None)
    assert bf16_warning("bf16", "cpu", without) == (
        "compute.precision bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo flags): expect "
        "it to run about 10x slower than fp32 (make bench on an AVX2-only CPU: x0.03 to x0.08 of fp32); use fp32")
    assert bf16_warning("bf16", "cpu", native) is None and bf16_warning("fp32", "cpu", without) is None
    assert bf16_warning("fp16", "cpu", without) is None
    assert "torch.cuda.is_bf16_supported(including_emulation=False) is False" in bf16_warning(
        "bf16", "cuda", bf16_support("cuda", None, False))
    assert bf16_warning("bf16", "cuda", bf16_support("cuda", None, True)) is None


@pytest.mark.parametrize("cpuinfo, warned", [(AVX2_ONLY, True), (SAPPHIRE_RAPIDS, False)])
def test_a_job_asking_for_bf16_is_warned_when_its_compute_settings_are_applied(monkeypatch, caplog, cpuinfo, warned):
    """configure_compute is what every stage calls at its start (wsss/core/cli.py), before its `compute switches` line."""
    import wsss.core.compute as compute

    read_flags = compute.cpu_flags
    monkeypatch.setattr(compute, "cpu_flags", lambda: read_flags(cpuinfo))
    threads = torch.get_num_threads()
    try:
        for precision in ("fp32", "bf16"):
            compute.configure_compute({"threads": threads, "deterministic": True, "device": "cpu",
                                       "precision": precision})
    finally:
        compute.configure_compute({"threads": threads, "deterministic": True})
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert [message.startswith("compute.precision bf16 on a CPU without native bf16") for message in warnings] == (
        [True] if warned else [])
