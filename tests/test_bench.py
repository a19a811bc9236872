"""bench/speed.py (make bench) runs each of its measurements; on tiny sizes here, so that it does not rot."""

import importlib.util
import json
import math
import sys

import pytest

from conftest import REPO, tiny_settings


def load_speed():
    spec = importlib.util.spec_from_file_location("speed", REPO / "bench" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["speed"] = module  # the CRF pool pickles its worker function by module name
    spec.loader.exec_module(module)
    return module


def test_every_measurement_gives_finite_positive_figures(monkeypatch):
    speed = load_speed()
    tiny = tiny_settings(classifier={"rca": {"contrast": True, "aggregation": True, "embed_dim": 8, "bank_size": 4,
                                             "clusters": 2}, "input_size": 32})
    settings = {"classifier": tiny["classifier"], "segmentation": {**tiny["segmentation"], "crop_size": 32},
                "cam": {**tiny["cam"], "batch_size": 2}, "crf": tiny["crf"], "num_classes": 4, "image_size": (24, 32),
                "steps": 1, "cam_images": 4, "crf_images": 2}
    device = speed.torch.device("cpu")
    figures = [speed.classifier_rate(settings, device, {"precision": "bf16", "channels_last": True}),
               speed.deeplab_rate(settings, device, {"precision": "fp16"}),
               *speed.cam_rates(settings, device).values(), *speed.crf_rates(settings).values(),
               *speed.deeplab_prediction_rates(settings, device).values(),
               *speed.store_figures(settings).values()]
    assert all(math.isfinite(value) and value > 0 for value in figures), figures
    assert set(speed.recipe("voc")["classifier"]) >= {"input_size", "batch_size", "rca"}
    assert speed.recipe("voc")["classifier"]["input_size"] == 368 and speed.recipe("reduced")["image_size"] == (96, 96)


def test_the_voc_projection_divides_each_stage_s_work_by_its_fastest_measured_rate():
    speed = load_speed()
    settings = speed.recipe("voc")
    assert settings["classifier"]["epochs"] == 30 and settings["segmentation"]["iterations"] == 20000
    figures = {"classifier training (RCA)": {"fp32": 100.0, "bf16": 200.0, "fp32 channels-last": 120.0},
               "DeepLab-v2 training": {"fp32": 10.0, "bf16": 20.0},
               "CAM extraction": {"1 image a batch": 10.0, "batches of 8": 40.0},
               "DeepLab-v2 prediction": {"fp32": 30.0, "bf16": 50.0, "scales 1/0.5/0.75 (max)": 12.0},
               "dense CRF": {"1 core": 2.0, "16 cores": 28.0, "efficiency": 0.875}}
    projection = speed.project_voc_run(figures, settings)
    # the val prediction as the papers score it (multi-scale), not the faster single-scale variants
    assert projection == {"classifier": 30 * 10582 / 200, "CAMs (train_aug, val)": (10582 + 1449) / 40,
                          "CRF pseudo labels": 10582 / 28, "DeepLab-v2": 20000 / 20,
                          "val prediction + CRF": 1449 / 12 + 1449 / 28}
    assert speed.with_crf(figures["DeepLab-v2 prediction"], {"1 core": 2.0, "16 cores": 28.0}) == \
        pytest.approx(1 / (1 / 12 + 1 / 28))


def test_the_per_scale_store_reads_back_the_maps_that_the_store_holds(tmp_path):
    """The alternative the bench measures must give what CAM extraction stores (within float16), from a
    store of a tenth of the bytes, also after its files left the page cache."""
    speed = load_speed()
    height, width, scales = 75, 100, [1.0, 0.5, 1.5]
    scale_maps = speed.per_scale_maps(3, 2, height, width, scales)
    assert [tuple(maps.shape) for maps in scale_maps[0]] == [(2, 10, 13), (2, 5, 7), (2, 14, 19)]  # round(112.5) = 112
    speed.write_per_scale(tmp_path / "per_scale.h5", scale_maps)
    expected = [speed.full_resolution(maps, height, width) for maps in scale_maps]
    assert speed.evict_from_page_cache(tmp_path)
    read = speed.read_per_scale(tmp_path / "per_scale.h5", 3, height, width)
    for got, want in zip(read, expected):
        assert got.shape == (2, height, width) and float(want.max()) > 0.99
        assert abs(got - want).max() < 2e-3
    assert (tmp_path / "per_scale.h5").stat().st_size < 0.15 * sum(maps.nbytes for maps in expected)


def test_the_bf16_figures_are_printed_beside_the_device_s_bf16_support():
    speed = load_speed()
    without = {"native": False, "evidence": "no avx512_bf16/amx_bf16 in /proc/cpuinfo flags"}
    lines = speed.section_lines("DeepLab-v2 training", {"fp32": 2.0, "bf16": 0.16, "fp32 channels-last": 2.2},
                                "iterations/s", "fp32", speed.bf16_answer(without))
    assert lines[2].rstrip().endswith("x0.08  (native bf16: no)") and "native bf16" not in lines[1] + lines[3]
    assert speed.bf16_answer({"native": True, "evidence": "amx_bf16 in /proc/cpuinfo flags"}) == "native bf16: yes"
    assert speed.bf16_answer({"native": None, "evidence": "no CPU flags in /proc/cpuinfo"}) == "native bf16: unknown"


def test_the_json_figures_hold_the_device_s_bf16_support(monkeypatch, tmp_path, capsys):
    """main() end to end, its measurements stubbed: the first line and --json name the bf16 support."""
    speed = load_speed()
    support = {"native": False, "evidence": "no avx512_bf16/amx_bf16 in /proc/cpuinfo flags"}
    monkeypatch.setattr(speed, "device_bf16_support", lambda device: support)
    def rate(settings, device, compute):
        return 2.0 if compute["precision"] == "fp32" else 0.2

    monkeypatch.setattr(speed, "classifier_rate", rate)
    monkeypatch.setattr(speed, "deeplab_rate", rate)
    monkeypatch.setattr(speed, "cam_rates", lambda settings, device: {"1 image a batch": 1.0, "bf16": 0.1})
    monkeypatch.setattr(speed, "crf_rates", lambda settings: {"1 core": 1.0, "2 cores": 2.0, "efficiency": 1.0})
    monkeypatch.setattr(speed, "deeplab_prediction_rates", lambda settings, device: {
        "fp32": 1.0, "bf16": 0.1, "scales 1/0.5/0.75 (max)": 0.5})
    monkeypatch.setattr(speed, "store_figures", lambda settings, folder: {"npy bytes": 1.0})
    monkeypatch.setattr(sys, "argv", ["speed.py", "--sizes", "reduced", "--json", str(tmp_path / "figures.json")])
    speed.main()
    printed = capsys.readouterr().out
    assert "native bf16: no (no avx512_bf16/amx_bf16 in /proc/cpuinfo flags)" in printed.splitlines()[0]
    assert printed.count("(native bf16: no)") == 4  # both trainings, CAM extraction, prediction
    assert json.loads((tmp_path / "figures.json").read_text())["device"]["bf16"] == support
