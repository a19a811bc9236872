"""Random fields the generator paints with: smooth value noise, fractal noise, Gaussian blur, colours."""

from __future__ import annotations

import math

import numpy as np


class Grid:
    """Pixel coordinate grids of a square image of side `size`."""

    def __init__(self, size: int):
        self.size = size
        coords = np.arange(size, dtype=np.float32)
        self.yy, self.xx = np.meshgrid(coords, coords, indexing="ij")


def value_noise(rng, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random (cells+1)^2 lattice, smoothstep-interpolated."""
    lattice = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def fbm(rng, size: int, base_cells: int, octaves: int = 3) -> np.ndarray:
    """Fractal value noise normalised to [0, 1]."""
    total = np.zeros((size, size), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * value_noise(rng, size, base_cells * 2 ** octave)
        norm += amplitude
        amplitude *= 0.5
    total /= norm
    lo, hi = total.min(), total.max()
    return (total - lo) / max(hi - lo, 1e-6)


def blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edge padding)."""
    if sigma <= 0:
        return array
    radius = max(1, int(math.ceil(3 * sigma)))
    kernel = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma * sigma)).astype(np.float32)
    kernel /= kernel.sum()
    h, w = array.shape
    padded = np.pad(array, ((radius, radius), (0, 0)), mode="edge")
    out = sum(k * padded[i:i + h] for i, k in enumerate(kernel))
    padded = np.pad(out, ((0, 0), (radius, radius)), mode="edge")
    return sum(k * padded[:, i:i + w] for i, k in enumerate(kernel))


def random_colour(rng, saturation=(0.2, 0.8)) -> np.ndarray:
    colour = rng.uniform(25, 230, 3)
    grey = colour.mean()
    return (grey + rng.uniform(*saturation) * (colour - grey)).astype(np.float32)


def unit_vector(rng) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    return math.cos(angle), math.sin(angle)
