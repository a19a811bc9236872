"""Online attention accumulation (OAA): each epoch's CAMs of the training images max-merged into one map per
(image, tag), and the HDF5 file that holds them (checkpointed with the classifier, read by the CAM stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..cams.store import CamWriter, cam_names, read_cams
from ..core.compute import autocast, memory_format
from ..data.datasets import ClassificationDataset
from ..models.classifier import CAMClassifier


class PlainImages(torch.utils.data.Dataset):
    """The un-augmented (square-resized) training images of a ClassificationDataset, for a DataLoader."""

    def __init__(self, dataset: ClassificationDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset.plain_image(index)


@torch.no_grad()
def accumulate_cams(model: CAMClassifier, dataset: ClassificationDataset, accumulated: dict[str, np.ndarray],
                    threshold: float, batch_size: int, device: torch.device, compute: dict | None = None,
                    loader_workers: int = 0) -> None:
    """Online attention accumulation (OAA): max-merge this epoch's CAMs into `accumulated`.

    Per (image, tag), the ReLU'd CAM normalised to [0, 1] is merged when sigmoid(score) >= threshold.
    The maps come from an eval-mode pass over the un-augmented (square-resized) training images after
    the epoch, so no augmentation has to be inverted; they stay at the network's output resolution.
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(PlainImages(dataset), batch_size=batch_size, num_workers=loader_workers,
                        pin_memory=device.type == "cuda")
    for start, images in zip(range(0, len(dataset), batch_size), loader):
        indices = list(range(start, start + len(images)))
        images = images.to(device, non_blocking=True)
        with autocast(compute or {}, device):
            out = model(images.contiguous(memory_format=memory_format(compute or {})))
        cams = F.relu(out["cams"].float()).cpu().numpy()
        scores = torch.sigmoid(out["logits"].float()).cpu().numpy()
        for index, image_cams, image_scores in zip(indices, cams, scores):
            name = dataset.names[index]
            tags = dataset.tags[name]
            merged = accumulated.setdefault(name, np.zeros((len(tags), *image_cams.shape[1:]), np.float32))
            for k, tag in enumerate(tags):
                peak = image_cams[tag].max()
                if image_scores[tag] >= threshold and peak > 0:
                    np.maximum(merged[k], image_cams[tag] / peak, out=merged[k])
    model.train(was_training)


def write_accumulated(accumulated: dict[str, np.ndarray], tags: dict[str, list[int]], path: str | Path) -> None:
    with CamWriter(path, expected_names=list(accumulated)) as writer:
        for name, maps in accumulated.items():
            writer.write(name, maps, tags[name])


def read_accumulated(path: str | Path) -> dict[str, np.ndarray]:
    return {name: read_cams(path, name)[0] for name in cam_names(path)}
