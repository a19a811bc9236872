"""bench/speed.py (make bench) runs each of its measurements; on tiny sizes here, so that it does not rot."""

import importlib.util
import math
import sys

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
               *speed.store_figures(settings).values()]
    assert all(math.isfinite(value) and value > 0 for value in figures), figures
    assert set(speed.recipe("voc")["classifier"]) >= {"input_size", "batch_size", "rca"}
    assert speed.recipe("voc")["classifier"]["input_size"] == 368 and speed.recipe("reduced")["image_size"] == (96, 96)
