"""Backgrounds: six texture families, sometimes two split by a wavy line, and the "water" texture of the
context class (the boat-and-water case)."""

from __future__ import annotations

import numpy as np

from .noise import Grid, fbm, random_colour, unit_vector, value_noise

BACKGROUND_TEXTURES = ("noise", "stripes", "gradient", "checker", "blotches", "mosaic")
CONTEXT_TEXTURE = "water"


def texture(rng, grid: Grid, family: str) -> np.ndarray:
    """One background texture family as (S, S, 3) float32."""
    s, yy, xx = grid.size, grid.yy, grid.xx
    c1, c2 = random_colour(rng), random_colour(rng)
    if family == "noise":
        t = fbm(rng, s, int(rng.integers(2, 5)))
    elif family == "stripes":
        dx, dy = unit_vector(rng)
        period = rng.uniform(s / 14, s / 4)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * dx + yy * dy) / period + rng.uniform(0, 2 * np.pi))
        t = np.clip((t - 0.5) * rng.uniform(1, 4) + 0.5, 0, 1)
        t = 0.85 * t + 0.15 * value_noise(rng, s, 6)
    elif family == "gradient":
        dx, dy = unit_vector(rng)
        proj = xx * dx + yy * dy
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
        t = 0.8 * t + 0.2 * value_noise(rng, s, 5)
    elif family == "checker":
        cell = rng.uniform(s / 12, s / 4)
        ox, oy = rng.uniform(0, cell, 2)
        t = ((np.floor((xx + ox) / cell) + np.floor((yy + oy) / cell)) % 2).astype(np.float32)
        c2 = np.clip(c1 + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
        t = 0.9 * t + 0.1 * value_noise(rng, s, 8)
    elif family == "blotches":
        image = c1 + (value_noise(rng, s, 4)[..., None] - 0.5) * 30
        for _ in range(int(rng.integers(4, 11))):
            cx, cy = rng.uniform(0, s, 2)
            a, b = rng.uniform(s / 20, s / 5, 2)
            dx, dy = unit_vector(rng)
            u = ((xx - cx) * dx + (yy - cy) * dy) / a
            v = (-(xx - cx) * dy + (yy - cy) * dx) / b
            alpha = np.clip((1 - (u * u + v * v)) * rng.uniform(2, 8), 0, 1)[..., None]
            image = image * (1 - alpha) + random_colour(rng) * alpha
        return image.astype(np.float32)
    elif family == "mosaic":
        k = int(rng.integers(5, 14))
        points = rng.uniform(0, s, (k, 2)).astype(np.float32)
        colours = np.stack([random_colour(rng) for _ in range(k)])
        d = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
        image = colours[np.argmin(d, axis=-1)]
        return (image + (value_noise(rng, s, 6)[..., None] - 0.5) * 20).astype(np.float32)
    elif family == CONTEXT_TEXTURE:
        deep = np.array([(20, 60, 110), (15, 80, 100), (30, 70, 130), (25, 95, 120)][int(rng.integers(4))],
                        np.float32) + rng.uniform(-15, 15, 3).astype(np.float32)
        light = np.clip(deep + np.array((90, 110, 100), np.float32) + rng.uniform(-20, 20, 3), 0, 255)
        period = rng.uniform(s / 16, s / 8)
        wobble = rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * xx / rng.uniform(s / 4, s / 1.5) + rng.uniform(0, 7))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (yy / period + wobble))
        t = np.clip(t ** 3 * 0.8 + 0.3 * value_noise(rng, s, 8) - 0.1, 0, 1)
        c1, c2 = deep, light.astype(np.float32)
    else:  # pragma: no cover - internal
        raise ValueError(family)
    return (c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.float32)


def split_mask(rng, grid: Grid, lower: bool = False) -> np.ndarray:
    """A wavy line across the image; True on one side (below a horizon when `lower`)."""
    s, yy, xx = grid.size, grid.yy, grid.xx
    if lower:
        level = rng.uniform(0.3, 0.6) * s
        wave = rng.uniform(0, 0.04 * s) * np.sin(2 * np.pi * xx / rng.uniform(s / 3, s) + rng.uniform(0, 7))
        return yy >= level + wave
    dx, dy = unit_vector(rng)
    offset = rng.uniform(-0.25, 0.25) * s
    return (xx - s / 2) * dx + (yy - s / 2) * dy > offset


def background(rng, grid: Grid, water: bool):
    """Background image, the water region (or None) and the family name."""
    if water:
        image = texture(rng, grid, CONTEXT_TEXTURE)
        if rng.random() < 0.5:
            return image, np.ones((grid.size, grid.size), bool), CONTEXT_TEXTURE
        region = split_mask(rng, grid, lower=True)
        family = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
        image = np.where(region[..., None], image, texture(rng, grid, family))
        return image, region, f"{CONTEXT_TEXTURE}+{family}"
    family = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
    image = texture(rng, grid, family)
    if rng.random() < 0.3:
        other = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
        image = np.where(split_mask(rng, grid)[..., None], image, texture(rng, grid, other))
        family = f"{family}+{other}"
    return image, None, family
