"""PyTorch datasets over a VOC-layout root: classification (tags), segmentation (label maps), inference."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import ColorJitter

from .voc import IGNORE_INDEX, VOCLayout, read_label_png

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def normalize(image: torch.Tensor) -> torch.Tensor:
    return (image - IMAGENET_MEAN) / IMAGENET_STD


def multi_hot(tags: list[int], num_classes: int) -> torch.Tensor:
    target = torch.zeros(num_classes)
    target[list(tags)] = 1.0
    return target


def random_scale_crop(image: torch.Tensor, label: torch.Tensor | None, size: int, scale_range,
                      fill_label: int = IGNORE_INDEX):
    """Rescale by a random factor, then take a random size x size crop (padding where the image is smaller).

    `image` is (3, H, W) normalised (so zero padding is the mean colour); `label` (H, W) long or None.
    """
    low, high = scale_range
    scale = float(torch.empty(1).uniform_(low, high)) if high > low else float(low)
    height, width = image.shape[1:]
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    if label is not None:
        label = F.interpolate(label[None, None].float(), size=(new_h, new_w), mode="nearest")[0, 0].long()
    pad_h, pad_w = max(0, size - new_h), max(0, size - new_w)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        if label is not None:
            label = F.pad(label, (0, pad_w, 0, pad_h), value=fill_label)
    height, width = image.shape[1:]
    top = int(torch.randint(0, height - size + 1, (1,)))
    left = int(torch.randint(0, width - size + 1, (1,)))
    image = image[:, top:top + size, left:left + size]
    if label is not None:
        label = label[top:top + size, left:left + size]
    if torch.rand(1) < 0.5:
        image = image.flip(-1)
        label = label.flip(-1) if label is not None else None
    return image, label


class PassBatches(torch.utils.data.Sampler):
    """A batch sampler whose batches are set before each pass over the data, so that one DataLoader, and its
    persistent worker processes, serve every pass (a DataLoader per pass would start its workers again)."""

    def __init__(self):
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def pass_loader(dataset, workers: int, pin_memory: bool) -> tuple[DataLoader, PassBatches]:
    """A DataLoader over `dataset` whose batches each pass takes from the returned PassBatches."""
    batches = PassBatches()
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0), batches


def seeded_batches(num_items: int, batch_size: int, seed: int) -> list[list[tuple[int, int]]]:
    """One shuffled pass over a dataset as batches of (index, sample seed); the last short batch is dropped.

    Augmentation is seeded per sample from these seeds, so a pass is a pure function of `seed`:
    the same whatever the number of loader workers, and a resumed run can skip batches exactly.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_items, generator=generator).tolist()
    sample_seeds = torch.randint(0, 2**31 - 1, (num_items,), generator=generator).tolist()
    items = list(zip(order, sample_seeds))
    batches = [items[start:start + batch_size] for start in range(0, num_items, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def _seeded(item) -> tuple[int, int]:
    """Accept a plain index or (index, sample seed); seed the augmentation RNG with the seed.

    Returns (index, sample seed); a plain index is its own seed.
    """
    index, sample_seed = item if isinstance(item, (tuple, list)) else (item, item)
    torch.manual_seed(sample_seed)
    return index, sample_seed


def split_has_masks(layout: VOCLayout, split: str) -> bool:
    """Whether every image of `split` has its true mask (recorded in the manifest, when the layout has one)."""
    paths = [layout.label_path(name, split) for name in layout.names(split)]
    if layout.manifest is not None:
        return all(path.relative_to(layout.root).as_posix() in layout.manifest["files"] for path in paths)
    return all(path.is_file() for path in paths)


class ClassificationDataset(Dataset):
    """Images with their multi-hot tags, augmented for classifier training.

    With `with_masks`, each sample also carries its true mask (uint8, 255 where the crop is padded) augmented as
    its image is: for measurements only, never for the loss. The augmentation draws the same random numbers either
    way, so the images are the same with or without the masks."""

    def __init__(self, layout: VOCLayout, split: str, input_size: int, scale_range=(1.0, 1.0),
                 color_jitter=(0.0, 0.0, 0.0, 0.0), with_masks: bool = False):
        self.layout = layout
        self.split = split
        self.with_masks = with_masks
        self.tags = layout.tags(split)
        self.names = list(self.tags)
        self.num_classes = layout.num_foreground
        self.input_size = input_size
        self.scale_range = scale_range
        self.jitter = ColorJitter(*color_jitter) if any(color_jitter) else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, item):
        """(image, multi-hot tags, sample seed[, mask]): the seed also drives RCA's per-region draws."""
        index, sample_seed = _seeded(item)
        name = self.names[index]
        image = to_tensor(self.layout.read_image(name))
        if self.jitter is not None:
            image = self.jitter(image)
        # square resize to the input size (RCA's protocol), then scale jitter and crop
        size = (self.input_size, self.input_size)
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = None
        if self.with_masks:
            mask = torch.from_numpy(self.layout.read_mask(name, self.split).astype(np.int64))
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        image, mask = random_scale_crop(normalize(image), mask, self.input_size, self.scale_range)
        sample = (image, multi_hot(self.tags[name], self.num_classes), sample_seed)
        return sample if mask is None else (*sample, mask.to(torch.uint8))

    def plain_image(self, index: int) -> torch.Tensor:
        """The image as the network sees it, without augmentation (square-resized, normalised)."""
        image = to_tensor(self.layout.read_image(self.names[index]))
        return normalize(F.interpolate(image[None], size=(self.input_size, self.input_size), mode="bilinear",
                                       align_corners=False)[0])


class SegmentationDataset(Dataset):
    """Images with label maps (pseudo labels or ground truth), random scale, crop and flip."""

    def __init__(self, layout: VOCLayout, label_paths: dict[str, str], crop_size: int, scale_range):
        self.layout = layout
        self.names = list(label_paths)
        self.label_paths = label_paths
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.num_classes = len(layout.class_names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, item):
        name = self.names[_seeded(item)[0]]
        image = normalize(to_tensor(self.layout.read_image(name)))
        label = read_label_png(self.label_paths[name], tuple(image.shape[1:]), self.num_classes)
        return random_scale_crop(image, torch.from_numpy(label.astype(np.int64)), self.crop_size, self.scale_range)


class InferenceDataset(Dataset):
    """Full-size normalised images with their names (and tags, when the split has them)."""

    def __init__(self, layout: VOCLayout, names: list[str]):
        self.layout = layout
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        name = self.names[index]
        return normalize(to_tensor(self.layout.read_image(name))), name


def image_sizes(layout: VOCLayout, names: list[str]) -> list[tuple[int, int]]:
    """(height, width) of each image (from the manifest, else the file headers)."""
    return [layout.image_size(name) for name in names]


def size_grouped_batches(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Batches of indices whose images share one size, so they stack without padding: each size's indices in
    order, cut into batches of `batch_size`, sizes in the order they first appear. Images of mixed sizes (VOC)
    still fill whole batches, not only runs of neighbours that happen to match."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(sizes):
        by_size.setdefault(size, []).append(index)
    return [indices[start:start + batch_size] for indices in by_size.values()
            for start in range(0, len(indices), batch_size)]


def collate_inference(batch):
    images, names = zip(*batch)
    return torch.stack(images), list(names)
