"""Object shapes and where they go: random closed outlines of a given area, their rasterisation, a marking's
square or disc inside an object, and placement in the frame (apart from or touching earlier objects)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .noise import Grid, unit_vector

SHAPES = ("ellipse", "blob", "polygon", "superellipse")


def random_shape(rng) -> np.ndarray:
    """Vertices (n, 2) of a random closed shape of unit area around the origin."""
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    aspect = rng.uniform(0.45, 1.0)
    if kind == "ellipse":
        x, y = np.cos(theta), np.sin(theta)
    elif kind == "blob":
        r = np.ones_like(theta)
        for k in range(2, 6):
            r += rng.uniform(0, 0.28 / math.sqrt(k)) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        r = np.maximum(r, 0.35)
        x, y = r * np.cos(theta), r * np.sin(theta)
        aspect = max(aspect, 0.6)
    elif kind == "polygon":
        n = int(rng.integers(3, 8))
        theta = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
        r = rng.uniform(0.75, 1.0, n)
        x, y = r * np.cos(theta), r * np.sin(theta)
        aspect = max(aspect, 0.6)
    else:  # superellipse: a rounded box
        p = rng.uniform(2.5, 5)
        c, s = np.cos(theta), np.sin(theta)
        x, y = np.sign(c) * np.abs(c) ** (2 / p), np.sign(s) * np.abs(s) ** (2 / p)
    y = y * aspect
    ca, sa = unit_vector(rng)
    vertices = np.stack([x * ca - y * sa, x * sa + y * ca], axis=1)
    area = 0.5 * abs(np.dot(vertices[:, 0], np.roll(vertices[:, 1], -1))
                     - np.dot(vertices[:, 1], np.roll(vertices[:, 0], -1)))
    return vertices / math.sqrt(area)


def raster(vertices: np.ndarray, size: int) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).polygon([(float(x), float(y)) for x, y in vertices], fill=1)
    return np.asarray(image, dtype=bool)


def box_sums(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of `mask` in every width x width box, indexed by the box's top-left corner."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
    integral[1:, 1:] = mask.astype(np.int32).cumsum(0).cumsum(1)
    return (integral[width:, width:] - integral[:-width, width:]
            - integral[width:, :-width] + integral[:-width, :-width])


def place_marking(rng, mask, grid, area, at_edge: bool = False):
    """A marking region of about `area` pixels inside `mask`: (region, cx, cy, width).

    Anywhere it fits, or with `at_edge` among the fifth of those places farthest from the object's centre (as a
    head or a wheel sits at one end of a real object)."""
    disc = rng.random() < 0.5
    width = max(3, int(round(math.sqrt(4 * area / math.pi) if disc else math.sqrt(area))))
    width = min(width, grid.size)
    sums = box_sums(mask, width)
    ys, xs = np.nonzero(sums >= sums.max() * 0.999 if sums.max() < width * width else sums == width * width)
    if at_edge and len(ys) > 1:
        object_ys, object_xs = np.nonzero(mask)
        distance = np.hypot(ys + (width - 1) / 2 - object_ys.mean(), xs + (width - 1) / 2 - object_xs.mean())
        far = distance >= np.quantile(distance, 0.8)
        ys, xs = ys[far], xs[far]
    pick = int(rng.integers(len(ys)))
    top, left = ys[pick], xs[pick]
    cy, cx = top + (width - 1) / 2, left + (width - 1) / 2
    if disc:
        shape = (grid.xx - cx) ** 2 + (grid.yy - cy) ** 2 <= (width / 2) ** 2
    else:
        shape = np.zeros_like(mask)
        shape[top:top + width, left:left + width] = True
    return shape & mask, cx, cy, width


def place_shape(rng, grid, area, centre_region=None, near=None, clip_ok=False):
    """Rasterise a random shape of `area` pixels; returns the mask or None if it leaves the frame."""
    s = grid.size
    vertices = random_shape(rng) * math.sqrt(area)
    reach = float(np.abs(vertices).max())
    if near is not None:
        (ncx, ncy), nradius = near
        dx, dy = unit_vector(rng)
        distance = (nradius + math.sqrt(area / math.pi)) * rng.uniform(0.55, 0.95)
        cx, cy = ncx + dx * distance, ncy + dy * distance
    elif centre_region is not None:
        ys, xs = np.nonzero(centre_region)
        pick = int(rng.integers(len(ys)))
        cx, cy = xs[pick] + rng.uniform(-0.5, 0.5), ys[pick] + rng.uniform(-0.5, 0.5)
    else:
        margin = min(0.7 * reach, 0.45 * s)
        cx, cy = rng.uniform(margin, s - margin, 2)
    mask = raster(vertices + (cx, cy), s)
    inside = int(mask.sum())
    if inside == 0 or (not clip_ok and inside < 0.8 * area):
        return None, (cx, cy)
    return mask, (cx, cy)
