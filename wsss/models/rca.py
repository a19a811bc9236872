"""RCA's modules: regional memory bank, semantic contrast, semantic aggregation (Zhou et al., CVPR 2022).

Feature space. Queries of the contrast, bank entries and the aggregation's keys all live in ONE space:
the projection head's output z (conv3x3-BN-ReLU-conv3x3 on the backbone feature x), L2-normalised.
(The public code queries with z but stores raw x in the bank: two different spaces.)

Region of (image i, class c): the pixels where the class-softmax of the coarse CAM P at channel c
exceeds its spatial mean; its embedding is the masked average of z there. Each class gets its own
mask from the unmodified maps (the public code overwrites the feature map with the first class's
masked copy inside its loop, compounding masks across classes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn



def region_masks(coarse_cams: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) binary masks: class-softmax of the CAMs above its spatial mean, per class."""
    probabilities = coarse_cams.softmax(dim=1)
    return (probabilities > probabilities.mean(dim=(2, 3), keepdim=True)).float()


def region_embeddings(features: torch.Tensor, coarse_cams: torch.Tensor) -> torch.Tensor:
    """(B, C, D) masked averages of `features` (B, D, h, w) over each class's region, L2-normalised."""
    masks = region_masks(coarse_cams)
    sums = torch.einsum("bchw,bdhw->bcd", masks, features)
    means = sums / masks.sum(dim=(2, 3)).clamp(min=1.0)[..., None]
    return F.normalize(means, dim=-1)


class RegionMemoryBank(nn.Module):
    """Per class a ring of `size` region embeddings.

    update "fifo" (the paper): the slot at the class's pointer is replaced by the new embedding.
    update "momentum" (the public code): the slot is blended, slot = m slot + (1 - m) e, renormalised;
    an empty slot takes e as it is (blending into zeros would only shrink it).
    Either way the pointer then moves on by one. Buffers, so the bank is saved with the model.

    `purity` holds a measurement of each entry (the share of its region on an object of its class), written with
    the entry, blended as it is; NaN where never measured. A measurement, not a part of the model: it is not in
    the state dict, so the model saved is the same with or without it (the trainer checkpoints it itself).
    """

    def __init__(self, num_classes: int, size: int, dim: int, update: str = "fifo", momentum: float = 0.99):
        super().__init__()
        if update not in ("fifo", "momentum"):
            raise ValueError(f"bank update must be 'fifo' or 'momentum', got {update!r}")
        self.update_rule, self.momentum = update, momentum
        self.register_buffer("entries", torch.zeros(num_classes, size, dim))
        self.register_buffer("filled", torch.zeros(num_classes, size, dtype=torch.bool))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("purity", torch.full((num_classes, size), float("nan")), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.entries.shape[0]

    @property
    def size(self) -> int:
        return self.entries.shape[1]

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, classes: torch.Tensor, purities: torch.Tensor | None = None) -> None:
        """Write (N, D) embeddings of the given (N,) classes, in order (all ranks pass the same list), with their
        (N,) `purities` when measured."""
        purities = [None] * len(classes) if purities is None else purities.tolist()
        for embedding, cls, purity in zip(embeddings.detach(), classes.tolist(), purities):
            slot = int(self.pointer[cls])
            blend = self.update_rule == "momentum" and bool(self.filled[cls, slot])
            if blend:
                embedding = self.momentum * self.entries[cls, slot] + (1 - self.momentum) * embedding
            if purity is not None:
                old = float(self.purity[cls, slot])
                self.purity[cls, slot] = self.momentum * old + (1 - self.momentum) * purity if blend else purity
            self.entries[cls, slot] = F.normalize(embedding, dim=0)
            self.filled[cls, slot] = True
            self.pointer[cls] = (slot + 1) % self.size

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries (M, D) and their classes (M,)."""
        classes = torch.arange(self.num_classes, device=self.entries.device)[:, None].expand_as(self.filled)
        return self.entries[self.filled], classes[self.filled]


def contrast_loss_per_query(queries: torch.Tensor, targets: torch.Tensor, bank_entries: torch.Tensor,
                            bank_classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-positive InfoNCE of (N, D) queries against the whole bank, for target classes (N,).

    For query q and target t, averaged over every bank entry p of class t:
        -[s_p - log(exp(s_p) + sum_{n not of class t} exp(s_n))],   s = q . m / temperature.
    A query whose target has no entry in the bank contributes 0. Returns (N,) losses.
    """
    similarities = queries @ bank_entries.T / temperature  # (N, M)
    positive = bank_classes[None, :] == targets[:, None]  # (N, M)
    negatives_sum = torch.where(positive, torch.zeros_like(similarities), similarities.exp()).sum(1, keepdim=True)
    per_pair = -(similarities - torch.log(similarities.exp() + negatives_sum))
    count = positive.sum(1)
    return torch.where(count > 0, (per_pair * positive).sum(1) / count.clamp(min=1), torch.zeros_like(count,
                                                                                                        dtype=queries.dtype))


def per_image_contrast_weight(public_weight: float, batch_size: int, gpus: int) -> float:
    """The `contrast_weight` (per image of a global mean) equal to the public code's `public_weight` at a batch of
    `batch_size` images on `gpus` GPUs.

    The public code sums the contrast over the images each GPU holds and weights the mean over GPUs
    (DataParallel): each image's loss is weighted public_weight / gpus. Its 0.01 at batch 8 is 0.08 per image on
    one GPU and 0.02 on the four the paper used.
    """
    return public_weight * batch_size / gpus


class MixupPartners(NamedTuple):
    """Each region's mixup draw: lam, its partner's embedding and the partner's class."""

    lam: torch.Tensor  # (N,)
    embeddings: torch.Tensor  # (N, D): bank entries (constants) or regions of the batch (with their gradient)
    classes: torch.Tensor  # (N,)


def mixup_draw(seed, mixup_beta: float, bank_entries: int) -> tuple[float, int]:
    """(lam, partner index in the bank) of one region, a function of its seed alone."""
    rng = np.random.default_rng(seed)
    return float(rng.beta(mixup_beta, mixup_beta)), int(rng.integers(bank_entries))


def bank_partners(bank: RegionMemoryBank, region_seeds, mixup_beta: float) -> MixupPartners:
    """Partners drawn uniformly from the filled bank entries (any class, the region's own included), one per
    region seed; detached, as the bank is."""
    entries, classes = bank.flat()
    draws = [mixup_draw(seed, mixup_beta, len(entries)) for seed in region_seeds]
    lam = torch.tensor([draw[0] for draw in draws], dtype=torch.float32, device=entries.device)
    index = torch.tensor([draw[1] for draw in draws], dtype=torch.long, device=entries.device)
    return MixupPartners(lam, entries[index], classes[index])


def batch_partner_draw(seed, mixup_beta: float, image_tags: list[list[int]]) -> tuple[float, int, int]:
    """(lam, partner image, partner class) of one region from its seed and the tags of the batch's images.

    As in the public code, the partner image is uniform over the batch (the region's own image included) and its
    class uniform over that image's tags; images without tags are skipped.
    """
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(mixup_beta, mixup_beta))
    tagged = [image for image, tags in enumerate(image_tags) if tags]
    image = tagged[int(rng.integers(len(tagged)))]
    return lam, image, image_tags[image][int(rng.integers(len(image_tags[image])))]


def region_weights(region_images: torch.Tensor) -> torch.Tensor:
    """(N,) 1 / the number of regions of each region's image: a weighted sum is then a sum of per-image means."""
    _, inverse, counts = torch.unique(region_images, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].float()


def mixup_contrast_losses(regions: torch.Tensor, region_classes: torch.Tensor, partners: MixupPartners,
                          bank: RegionMemoryBank, temperature: float) -> torch.Tensor:
    """RCA's semantic contrast with region mixup: (N,) losses of the regions (N, D) of classes (N,).

    Each region r of class c is mixed with its partner r' of class c': q = normalise(lam r + (1 - lam) r'), and
    its loss is lam l(q, c) + (1 - lam) l(q, c') (`contrast_loss_per_query` against the whole bank). Computed in
    float32 whatever the forward's precision: similarities of unit vectors are at most 1 / temperature, so exp()
    stays below exp(1 / 0.07) = 1.6e6 at the paper's temperature; in fp16 (max 65504) it would overflow.
    """
    entries, classes = bank.flat()
    if len(regions) == 0 or len(entries) == 0:
        return regions.float().sum(-1) * 0.0
    with torch.autocast(regions.device.type, enabled=False):
        lam = partners.lam.to(regions.device)[:, None]
        queries = F.normalize(lam * regions.float() + (1 - lam) * partners.embeddings.float(), dim=-1)
        own = contrast_loss_per_query(queries, region_classes, entries.float(), classes, temperature)
        other = contrast_loss_per_query(queries, partners.classes, entries.float(), classes, temperature)
        return lam[:, 0] * own + (1 - lam[:, 0]) * other


def semantic_contrast_loss(regions: torch.Tensor, region_classes: torch.Tensor, region_images: torch.Tensor,
                           partners: MixupPartners, bank: RegionMemoryBank, temperature: float,
                           num_images: float | None = None) -> torch.Tensor:
    """The contrast of one batch: the regions' losses averaged over each image's regions, summed over images and
    divided by `num_images` (the global count of images with regions; default: this batch's)."""
    if len(regions) == 0:
        return regions.float().sum() * 0.0
    losses = mixup_contrast_losses(regions, region_classes, partners, bank, temperature)
    count = num_images if num_images is not None else len(torch.unique(region_images))
    return (losses * region_weights(region_images)).sum() / count


@torch.no_grad()
def kmeans(points: torch.Tensor, clusters: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """Seeded k-means (k-means++ start, cosine distance on normalised points): (clusters, D) centres.

    With fewer points than clusters, the points are repeated (each centre still a real region).
    """
    points = F.normalize(points.float(), dim=-1)
    if len(points) <= clusters:
        return points[torch.arange(clusters) % len(points)]
    first = int(torch.randint(len(points), (1,), generator=generator))
    centres = [points[first]]
    for _ in range(clusters - 1):
        distance = (1 - points @ torch.stack(centres).T).clamp(min=0).min(1).values
        weights = distance / distance.sum() if distance.sum() > 0 else torch.full_like(distance, 1 / len(distance))
        centres.append(points[int(torch.multinomial(weights.cpu(), 1, generator=generator))])
    centres = torch.stack(centres)
    for _ in range(iterations):
        assignment = (points @ centres.T).argmax(1)
        for k in range(clusters):
            members = points[assignment == k]
            if len(members):
                centres[k] = F.normalize(members.mean(0), dim=0)
    return centres


class SemanticAggregation(nn.Module):
    """Aggregates class-centroid semantics into every pixel of x.

    variant "paper": attention A = softmax over centroids of (z_pixel . centroid) / temperature
    (rows sum to one), F' = A . centroids, projected to x's width by a 1x1 conv.
    variant "public": the public code's form, learned query/key/value projections and no softmax.
    The projection is batch-normalised: the centroids are unit vectors in z's space, so F' is about
    1/sqrt(D) per channel while x (post BatchNorm/ReLU) is about 1, and unnormalised the refined head
    learnt to ignore it (measurements: docs/method.md; the public code's centroids live in the raw
    feature space and have x's scale). The fused feature is a 1x1 conv (+ ReLU) of [x ; F'].
    Before the first k-means there are no centroids and F' is zero.
    """

    def __init__(self, feature_dim: int, embed_dim: int, num_centroids: int, variant: str = "paper",
                 temperature: float = 0.1):
        super().__init__()
        if variant not in ("paper", "public"):
            raise ValueError(f"aggregation variant must be 'paper' or 'public', got {variant!r}")
        self.variant, self.temperature = variant, temperature
        self.register_buffer("centroids", torch.zeros(num_centroids, embed_dim))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        if variant == "public":
            self.query = nn.Conv2d(embed_dim, embed_dim, 1)
            self.key = nn.Linear(embed_dim, embed_dim)
            self.value = nn.Linear(embed_dim, embed_dim)
        self.project = nn.Sequential(nn.Conv2d(embed_dim, feature_dim, 1), nn.BatchNorm2d(feature_dim))
        self.fuse = nn.Sequential(nn.Conv2d(2 * feature_dim, feature_dim, 1), nn.ReLU(inplace=True))

    def set_centroids(self, centroids: torch.Tensor) -> None:
        self.centroids.copy_(centroids)
        self.ready.fill_(True)

    def attention(self, z: torch.Tensor) -> torch.Tensor:
        """(B, h*w, K) attention of each pixel to the K centroids."""
        if self.variant == "paper":
            pixels = F.normalize(z, dim=1).flatten(2).transpose(1, 2)  # (B, hw, D)
            return (pixels @ self.centroids.T / self.temperature).softmax(dim=-1)
        queries = self.query(z).flatten(2).transpose(1, 2)
        return queries @ self.key(self.centroids).T / self.centroids.shape[1] ** 0.5

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not bool(self.ready):
            aggregated = torch.zeros_like(x)
        else:
            values = self.centroids if self.variant == "paper" else self.value(self.centroids)
            mixed = self.attention(z) @ values  # (B, hw, D)
            mixed = mixed.transpose(1, 2).reshape(z.shape[0], -1, *z.shape[2:])
            aggregated = self.project(mixed)
        return self.fuse(torch.cat([x, aggregated], dim=1))


class ProjectionHead(nn.Module):
    """conv3x3-BN-ReLU-conv3x3: the embedding space z of the contrast, the bank and the aggregation."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(in_channels, dim, 3, padding=1), nn.BatchNorm2d(dim),
                                    nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
