"""Inference with the trained DeepLab-v2: loading it (checked), its predictions on a split, and the evaluation
server's archive of a test split's predictions."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..core.artifacts import atomic_directory, atomic_file
from ..core.checkpoint import load_trained_model
from ..core.compute import autocast, memory_format, select_device
from ..core.runtime import forked_pool, progress
from ..data.datasets import InferenceDataset, collate_inference, image_sizes, size_grouped_batches
from ..data.voc import VOCLayout, open_layout, write_label_png
from ..models.deeplab import DeepLabV2, build_deeplab


def load_deeplab(model_path: str | Path, device: torch.device) -> DeepLabV2:
    return load_trained_model(model_path, device, build_deeplab)


_LABELLER: dict = {}


def _setup_labeller(layout: VOCLayout, crf_settings: dict | None, out_dir: Path) -> None:
    _LABELLER.update(layout=layout, crf=crf_settings, out_dir=out_dir)


def _write_label(name: str, probability: np.ndarray) -> str:
    """The prediction of one image from its class probabilities (CRF post-processed when set), as a PNG."""
    if _LABELLER["crf"] is not None:
        from ..pseudo_labels.crf import dense_crf

        probability = dense_crf(_LABELLER["layout"].read_image(name), probability, _LABELLER["crf"])
    write_label_png(_LABELLER["out_dir"] / f"{name}.png", probability.argmax(0).astype(np.uint8), atomic=False)
    return name


@torch.no_grad()
def predict(model_path: str | Path, dataset: str | Path | VOCLayout, split: str, settings: dict, out_dir: str | Path,
            crf_settings: dict | None = None, batch_size: int = 8, workers: int = 1) -> dict[str, Path]:
    """Write a palette PNG prediction for every image of a split into `out_dir` (which appears whole): multi-scale
    (`segmentation.eval_scales`, `eval_flip`, `eval_fusion`), with CRF post-processing when `crf_settings` are
    given.

    With `workers` > 1 and the CRF on, the CRF runs in that many processes while the network predicts the next
    batches (at most 2 x workers images wait, so memory stays bounded)."""
    device = select_device(settings["compute"]["device"])
    layout = open_layout(dataset)
    names = layout.names(split)
    compute = settings["compute"]
    model = load_deeplab(model_path, device).to(memory_format=memory_format(compute))
    multi_scale = prediction_scales(settings)
    batches = size_grouped_batches(image_sizes(layout, names), batch_size)
    loader = DataLoader(InferenceDataset(layout, names), batch_sampler=batches, collate_fn=collate_inference,
                        num_workers=settings["compute"]["loader_workers"], pin_memory=device.type == "cuda")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as temporary, labeller_pool(layout, crf_settings, temporary, workers) as pool:
        waiting: collections.deque = collections.deque()
        for images, batch_names in progress(loader, desc=f"predicting {split}", total=len(batches)):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(compute))
            probabilities = class_probabilities(model, images, compute, device, **multi_scale).cpu().numpy()
            for probability, name in zip(probabilities, batch_names):
                if pool is None:
                    _write_label(name, probability)
                    continue
                waiting.append(pool.apply_async(_write_label, (name, probability)))
                while len(waiting) > 2 * workers:
                    waiting.popleft().get()
        for result in waiting:
            result.get()
    return {name: out_dir / f"{name}.png" for name in names}


def class_probabilities(model: DeepLabV2, images: torch.Tensor, compute: dict, device: torch.device,
                        scales: tuple[float, ...] = (1.0,), flip: bool = True, fusion: str = "mean") -> torch.Tensor:
    """(B, C, H, W) class probabilities of a batch at the images' size, from the network run at every input
    scale (and on its horizontal flip, with `flip`), each output resized to the images' size, then fused:
    "mean": the mean of the softmax probabilities; "max": the softmax of the pixel-wise maximum of the logits
    (deeplab-pytorch's multi-scale inference, which the papers' DeepLab-v2 numbers used)."""
    if fusion not in ("mean", "max"):
        raise ValueError(f"segmentation.eval_fusion must be 'mean' or 'max', got {fusion!r}")
    size = images.shape[2:]
    fused = None
    for scale in scales:
        scaled = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                           align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            logits = scaled_logits(model, scaled.flip(-1) if flipped else scaled, size, compute, device)
            logits = logits.flip(-1) if flipped else logits
            if fusion == "max":
                fused = logits if fused is None else torch.maximum(fused, logits)
            else:
                probabilities = F.softmax(logits, dim=1)
                fused = probabilities if fused is None else fused + probabilities
    if fusion == "max":
        return F.softmax(fused, dim=1)
    return fused / (len(scales) * (2 if flip else 1))


def scaled_logits(model: DeepLabV2, images: torch.Tensor, size: tuple[int, int], compute: dict,
                  device: torch.device) -> torch.Tensor:
    """The network's (B, C, h, w) logits of a batch, in float32, resized to `size`."""
    with autocast(compute, device):
        logits = model(images.contiguous(memory_format=memory_format(compute))).float()
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def prediction_scales(settings: dict) -> dict:
    """class_probabilities' scales, flip and fusion from the segmentation settings."""
    segmentation = settings["segmentation"]
    return {"scales": tuple(segmentation["eval_scales"]), "flip": segmentation["eval_flip"],
            "fusion": segmentation["eval_fusion"]}


def labeller_pool(layout: VOCLayout, crf_settings: dict | None, out_dir: Path, workers: int):
    """A pool of `workers` processes that CRF and write predictions; None (this process does it) without a CRF or
    with one worker."""
    return forked_pool(workers if crf_settings is not None else 1, _setup_labeller, (layout, crf_settings, out_dir))


SERVER_FOLDER = Path("results") / "VOC2012" / "Segmentation" / "comp6_test_cls"  # the VOC server's layout


def archive_predictions(predictions: str | Path, archive: str | Path) -> int:
    """Pack a folder of prediction PNGs as the VOC evaluation server expects them (results/VOC2012/
    Segmentation/comp6_test_cls/NAME.png, palette PNGs) into a .tar.gz; return the number of images."""
    import tarfile

    pngs = sorted(Path(predictions).glob("*.png"))
    with atomic_file(archive) as temporary, tarfile.open(temporary, "w:gz") as tar:
        for png in pngs:
            tar.add(png, arcname=str(SERVER_FOLDER / png.name))
    return len(pngs)
