"""The built-in synthetic dataset: cluttered scenes that are hard in the ways WSSS is hard.

`generate_dataset(root, {"train": 600, "val": 200}, seed=0)` writes a complete dataset in
PASCAL VOC layout (see `wsss.data.voc`) plus `dataset.json` and `diagnostics.json`, and returns
the diagnostics. See docs/builtin-dataset.md for the difficulties it reproduces:

* Discriminative parts. Every object is a body (blob, ellipse, polygon or rounded box; the
  shape is no class cue) carrying one small marking, a patch of the class's unique saturated
  colour with a class-specific pattern (stripes, dots, cross, ...), covering about `part_area`
  of the object. Bodies draw colour and texture from one pool shared by all classes and only
  with probability `body_class_specificity` use their class's preferred style, so the marking
  is the one reliable class cue and CAMs light it up, not the body. A body is still one
  coherent region (one colour with mild brightness texture) at least `body_contrast` away in
  RGB from the mean background beneath it, so colour-based CRF or saliency can grow a seed.
* Context bias. Class `context_class` (default 1, "yellow_dots") is shown on the "water"
  background (blue waves, whole image or below a wavy horizon, with the object centred in the
  water) with probability `context_bias`; other images get water with `context_texture_rate`.
* Clutter and scale. Six procedural background families (noise, stripes, gradient, checker,
  blotches, mosaic), sometimes two of them split by a line; distractors of no class (bare
  bodies, bodies with a wrong marking, lone wrong-marking patches: a class colour with a
  pattern that is not that class's, or an unused colour); object areas log-uniform in
  `object_area`; 1 to 3 objects, placed larger first, with probability `overlap` touching or
  overlapping an earlier one (a later object hides at most `max_occlusion` of an earlier one
  and at most half of its marking); the mask shows the visible class.
* Imperfect saliency. Blurred (`saliency_blur`), objects at varying strength, a chunk of an
  object missed (`saliency_part_miss`), whole objects missed (`saliency_object_miss`),
  distractors marked salient (`saliency_distractor`), low-frequency noise (`saliency_noise`).
* Imbalance. Object classes are drawn with weights falling geometrically from class 0 to the
  last class, whose ratio is `class_imbalance` (class 0 is the most frequent).

Every image is generated from its own `numpy.random.default_rng(SeedSequence([seed,
crc32(split), index]))`, so the output is byte-identical for the same (splits, seed, options)
and does not depend on generation order.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..artifacts import atomic_directory, write_lines
from .parts import PARTS_FOLDER, encode_parts
from .voc import IGNORE_INDEX, tags_from_label, write_class_list, write_label_png

__all__ = [
    "DEFAULTS", "MARKINGS", "BACKGROUND_TEXTURES", "CONTEXT_TEXTURE", "GENERATOR",
    "class_names", "class_weights", "resolve_options", "generate_dataset", "generate_sample",
]

GENERATOR = "wsss.data.synthetic"
GENERATOR_VERSION = 1

DEFAULTS: dict = {
    # side of the square images, in pixels
    "image_size": 96,
    # number of object classes (1..12); names come from MARKINGS, e.g. "red_stripes"
    "num_classes": 6,
    # inclusive range of the number of objects per image (uniform)
    "objects_per_image": [1, 3],
    # range of an object's area as a fraction of the image (log-uniform; visible area can be
    # smaller after occlusion or clipping at the image border)
    "object_area": [0.03, 0.45],
    # fraction of an object's area covered by its discriminative marking (jittered +-20%)
    "part_area": 0.2,
    # probability that a body takes its class's preferred colour and texture instead of a
    # uniform draw from the pool shared by all classes (0 = bodies carry no class cue)
    "body_class_specificity": 0.3,
    # least RGB distance between a body's colour and the mean background beneath it
    "body_contrast": 60.0,
    # 0-based class that co-occurs with the "water" background texture (the boat-and-water case)
    "context_class": 1,
    # probability that an image containing the context class has the water background
    "context_bias": 0.8,
    # probability that an image without the context class has the water background anyway
    "context_texture_rate": 0.1,
    # inclusive range of distractor shapes per image (they belong to no class: label 0)
    "distractors": [0, 3],
    # ratio of the sampling weights of the most (class 0) and least (last) frequent class;
    # weights fall geometrically in between; 1 = balanced
    "class_imbalance": 4.0,
    # probability that an object is placed touching/overlapping an earlier one; otherwise it is
    # placed apart if possible (0 = never overlap on purpose)
    "overlap": 0.3,
    # the largest fraction of an earlier object's area a later object may hide
    "max_occlusion": 0.35,
    # standard deviation of per-pixel Gaussian noise on the 0..255 scale
    "pixel_noise": 4.0,
    # width in pixels of an ignore band (255) along label boundaries, like VOC (0 = none)
    "ignore_band": 0,
    # Gaussian sigma (pixels) of the saliency map's soft boundaries
    "saliency_blur": 2.0,
    # probability that saliency misses a chunk (20-50%) of an object
    "saliency_part_miss": 0.3,
    # probability that a distractor is marked salient
    "saliency_distractor": 0.4,
    # probability that saliency misses an object entirely
    "saliency_object_miss": 0.05,
    # amplitude of low-frequency noise added to the saliency map (0..1 scale)
    "saliency_noise": 0.12,
    # JPEG quality of the images (4:4:4 chroma, so small markings keep their colour)
    "jpeg_quality": 95,
}

# (name, marking colour, pattern); class i gets MARKINGS[i]
MARKINGS = (
    ("red_stripes", (225, 30, 35), "stripes"),
    ("yellow_dots", (250, 225, 20), "dots"),
    ("blue_cross", (30, 70, 240), "cross"),
    ("green_checker", (20, 190, 60), "checker"),
    ("magenta_rings", (225, 40, 215), "rings"),
    ("cyan_diagonal", (20, 215, 225), "diagonal"),
    ("orange_grid", (255, 135, 0), "grid"),
    ("white_bars", (245, 245, 245), "bars"),
    ("purple_spot", (125, 35, 205), "spot"),
    ("black_zigzag", (20, 20, 20), "zigzag"),
    ("lime_frame", (170, 255, 60), "frame"),
    ("pink_half", (255, 125, 185), "half"),
)
MAX_CLASSES = len(MARKINGS)
_PATTERNS = tuple(m[2] for m in MARKINGS)
# marking colours no class uses (for distractor patches)
_SPARE_MARKING_COLOURS = ((140, 255, 200), (255, 60, 120), (90, 160, 255), (230, 200, 255))

# body pool shared by all classes: muted colours and mild brightness textures
_BODY_COLOURS = np.array([
    (150, 105, 65), (120, 120, 120), (125, 135, 60), (210, 180, 130), (85, 105, 150),
    (190, 125, 135), (55, 95, 65), (195, 150, 55), (60, 50, 45), (215, 210, 195),
], dtype=np.float32)
_BODY_TEXTURES = ("flat", "mottled", "striped", "speckled", "shaded")
_SHAPES = ("ellipse", "blob", "polygon", "superellipse")

BACKGROUND_TEXTURES = ("noise", "stripes", "gradient", "checker", "blotches", "mosaic")
CONTEXT_TEXTURE = "water"

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# --------------------------------------------------------------------------- options


def class_names(num_classes: int) -> list[str]:
    """The names of the first `num_classes` object classes (background not included)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must lie in 1..{MAX_CLASSES}, got {num_classes}")
    return [MARKINGS[i][0] for i in range(num_classes)]


def class_weights(num_classes: int, imbalance: float) -> np.ndarray:
    """Per-object sampling weights: geometric from 1 (class 0) down to 1/imbalance (last class)."""
    if num_classes == 1:
        return np.ones(1)
    weights = float(imbalance) ** (-np.arange(num_classes) / (num_classes - 1))
    return weights / weights.sum()


def _range(name, value, kind, low, high):
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"option {name!r} must be a pair [low, high], got {value!r}") from None
    if kind is int and (int(lo) != lo or int(hi) != hi):
        raise ValueError(f"option {name!r} must hold integers, got {value!r}")
    lo, hi = kind(lo), kind(hi)
    if not (low <= lo <= hi <= high):
        raise ValueError(f"option {name!r} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return [lo, hi]


def _number(name, value, kind, low, high):
    if isinstance(value, bool) and kind is int:
        raise ValueError(f"option {name!r} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name!r} must be a number, got {value!r}") from None
    if kind is int and number != value:
        raise ValueError(f"option {name!r} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise ValueError(f"option {name!r} must lie in {low}..{high}, got {value!r}")
    return number


def resolve_options(options: dict | None = None) -> dict:
    """DEFAULTS overridden by `options`, validated; unknown keys raise ValueError naming them."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic dataset option(s): {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    out = {
        "image_size": _number("image_size", o["image_size"], int, 16, 1024),
        "num_classes": _number("num_classes", o["num_classes"], int, 1, MAX_CLASSES),
        "objects_per_image": _range("objects_per_image", o["objects_per_image"], int, 1, 8),
        "object_area": _range("object_area", o["object_area"], float, 0.005, 0.8),
        "part_area": _number("part_area", o["part_area"], float, 0.02, 0.8),
        "body_class_specificity": _number("body_class_specificity", o["body_class_specificity"], float, 0, 1),
        "body_contrast": _number("body_contrast", o["body_contrast"], float, 0, 200),
        "context_class": _number("context_class", o["context_class"], int, 0, MAX_CLASSES - 1),
        "context_bias": _number("context_bias", o["context_bias"], float, 0, 1),
        "context_texture_rate": _number("context_texture_rate", o["context_texture_rate"], float, 0, 1),
        "distractors": _range("distractors", o["distractors"], int, 0, 16),
        "class_imbalance": _number("class_imbalance", o["class_imbalance"], float, 1, 1000),
        "overlap": _number("overlap", o["overlap"], float, 0, 1),
        "max_occlusion": _number("max_occlusion", o["max_occlusion"], float, 0, 0.9),
        "pixel_noise": _number("pixel_noise", o["pixel_noise"], float, 0, 64),
        "ignore_band": _number("ignore_band", o["ignore_band"], int, 0, 8),
        "saliency_blur": _number("saliency_blur", o["saliency_blur"], float, 0, 32),
        "saliency_part_miss": _number("saliency_part_miss", o["saliency_part_miss"], float, 0, 1),
        "saliency_distractor": _number("saliency_distractor", o["saliency_distractor"], float, 0, 1),
        "saliency_object_miss": _number("saliency_object_miss", o["saliency_object_miss"], float, 0, 1),
        "saliency_noise": _number("saliency_noise", o["saliency_noise"], float, 0, 1),
        "jpeg_quality": _number("jpeg_quality", o["jpeg_quality"], int, 1, 100),
    }
    if out["context_class"] >= out["num_classes"]:
        raise ValueError(f"option 'context_class' ({out['context_class']}) must be below "
                         f"num_classes ({out['num_classes']})")
    return out


# --------------------------------------------------------------------------- helpers


class _Grid:
    """Per-size constants: pixel coordinate grids."""

    def __init__(self, size: int):
        self.size = size
        coords = np.arange(size, dtype=np.float32)
        self.yy, self.xx = np.meshgrid(coords, coords, indexing="ij")


def _value_noise(rng, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random (cells+1)^2 lattice, smoothstep-interpolated."""
    lattice = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _fbm(rng, size: int, base_cells: int, octaves: int = 3) -> np.ndarray:
    """Fractal value noise normalised to [0, 1]."""
    total = np.zeros((size, size), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * _value_noise(rng, size, base_cells * 2 ** octave)
        norm += amplitude
        amplitude *= 0.5
    total /= norm
    lo, hi = total.min(), total.max()
    return (total - lo) / max(hi - lo, 1e-6)


def _blur(array: np.ndarray, sigma: float) -> np.ndarray:
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


def _random_colour(rng, saturation=(0.2, 0.8)) -> np.ndarray:
    colour = rng.uniform(25, 230, 3)
    grey = colour.mean()
    return (grey + rng.uniform(*saturation) * (colour - grey)).astype(np.float32)


def _unit(rng) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    return math.cos(angle), math.sin(angle)


# --------------------------------------------------------------------------- backgrounds


def _texture(rng, grid: _Grid, family: str) -> np.ndarray:
    """One background texture family as (S, S, 3) float32."""
    s, yy, xx = grid.size, grid.yy, grid.xx
    c1, c2 = _random_colour(rng), _random_colour(rng)
    if family == "noise":
        t = _fbm(rng, s, int(rng.integers(2, 5)))
    elif family == "stripes":
        dx, dy = _unit(rng)
        period = rng.uniform(s / 14, s / 4)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * dx + yy * dy) / period + rng.uniform(0, 2 * np.pi))
        t = np.clip((t - 0.5) * rng.uniform(1, 4) + 0.5, 0, 1)
        t = 0.85 * t + 0.15 * _value_noise(rng, s, 6)
    elif family == "gradient":
        dx, dy = _unit(rng)
        proj = xx * dx + yy * dy
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
        t = 0.8 * t + 0.2 * _value_noise(rng, s, 5)
    elif family == "checker":
        cell = rng.uniform(s / 12, s / 4)
        ox, oy = rng.uniform(0, cell, 2)
        t = ((np.floor((xx + ox) / cell) + np.floor((yy + oy) / cell)) % 2).astype(np.float32)
        c2 = np.clip(c1 + rng.uniform(-70, 70, 3), 0, 255).astype(np.float32)
        t = 0.9 * t + 0.1 * _value_noise(rng, s, 8)
    elif family == "blotches":
        image = c1 + (_value_noise(rng, s, 4)[..., None] - 0.5) * 30
        for _ in range(int(rng.integers(4, 11))):
            cx, cy = rng.uniform(0, s, 2)
            a, b = rng.uniform(s / 20, s / 5, 2)
            dx, dy = _unit(rng)
            u = ((xx - cx) * dx + (yy - cy) * dy) / a
            v = (-(xx - cx) * dy + (yy - cy) * dx) / b
            alpha = np.clip((1 - (u * u + v * v)) * rng.uniform(2, 8), 0, 1)[..., None]
            image = image * (1 - alpha) + _random_colour(rng) * alpha
        return image.astype(np.float32)
    elif family == "mosaic":
        k = int(rng.integers(5, 14))
        points = rng.uniform(0, s, (k, 2)).astype(np.float32)
        colours = np.stack([_random_colour(rng) for _ in range(k)])
        d = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
        image = colours[np.argmin(d, axis=-1)]
        return (image + (_value_noise(rng, s, 6)[..., None] - 0.5) * 20).astype(np.float32)
    elif family == CONTEXT_TEXTURE:
        deep = np.array([(20, 60, 110), (15, 80, 100), (30, 70, 130), (25, 95, 120)][int(rng.integers(4))],
                        np.float32) + rng.uniform(-15, 15, 3).astype(np.float32)
        light = np.clip(deep + np.array((90, 110, 100), np.float32) + rng.uniform(-20, 20, 3), 0, 255)
        period = rng.uniform(s / 16, s / 8)
        wobble = rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * xx / rng.uniform(s / 4, s / 1.5) + rng.uniform(0, 7))
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (yy / period + wobble))
        t = np.clip(t ** 3 * 0.8 + 0.3 * _value_noise(rng, s, 8) - 0.1, 0, 1)
        c1, c2 = deep, light.astype(np.float32)
    else:  # pragma: no cover - internal
        raise ValueError(family)
    return (c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.float32)


def _split_mask(rng, grid: _Grid, lower: bool = False) -> np.ndarray:
    """A wavy line across the image; True on one side (below a horizon when `lower`)."""
    s, yy, xx = grid.size, grid.yy, grid.xx
    if lower:
        level = rng.uniform(0.3, 0.6) * s
        wave = rng.uniform(0, 0.04 * s) * np.sin(2 * np.pi * xx / rng.uniform(s / 3, s) + rng.uniform(0, 7))
        return yy >= level + wave
    dx, dy = _unit(rng)
    offset = rng.uniform(-0.25, 0.25) * s
    return (xx - s / 2) * dx + (yy - s / 2) * dy > offset


def _background(rng, grid: _Grid, water: bool):
    """Background image, the water region (or None) and the family name."""
    if water:
        image = _texture(rng, grid, CONTEXT_TEXTURE)
        if rng.random() < 0.5:
            return image, np.ones((grid.size, grid.size), bool), CONTEXT_TEXTURE
        region = _split_mask(rng, grid, lower=True)
        family = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
        image = np.where(region[..., None], image, _texture(rng, grid, family))
        return image, region, f"{CONTEXT_TEXTURE}+{family}"
    family = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
    image = _texture(rng, grid, family)
    if rng.random() < 0.3:
        other = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
        image = np.where(_split_mask(rng, grid)[..., None], image, _texture(rng, grid, other))
        family = f"{family}+{other}"
    return image, None, family


# --------------------------------------------------------------------------- shapes and paint


def _shape(rng) -> np.ndarray:
    """Vertices (n, 2) of a random closed shape of unit area around the origin."""
    kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
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
    ca, sa = _unit(rng)
    vertices = np.stack([x * ca - y * sa, x * sa + y * ca], axis=1)
    area = 0.5 * abs(np.dot(vertices[:, 0], np.roll(vertices[:, 1], -1))
                     - np.dot(vertices[:, 1], np.roll(vertices[:, 0], -1)))
    return vertices / math.sqrt(area)


def _raster(vertices: np.ndarray, size: int) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).polygon([(float(x), float(y)) for x, y in vertices], fill=1)
    return np.asarray(image, dtype=bool)


def _pattern(name: str, grid: _Grid, cx: float, cy: float, width: float) -> np.ndarray:
    """Where a marking of `width` centred at (cx, cy) takes its secondary colour."""
    period = max(2.5, width / 3.2)
    u, v = (grid.xx - cx) / period, (grid.yy - cy) / period
    a, b = (grid.xx - cx) / (width / 2), (grid.yy - cy) / (width / 2)
    if name == "stripes":
        return np.sin(2 * np.pi * v) > 0
    if name == "dots":
        return (u - np.round(u)) ** 2 + (v - np.round(v)) ** 2 < 0.3 ** 2
    if name == "cross":
        return (np.abs(a) < 0.25) | (np.abs(b) < 0.25)
    if name == "checker":
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if name == "rings":
        return np.sin(2 * np.pi * np.sqrt(u * u + v * v)) > 0
    if name == "diagonal":
        return np.sin(2 * np.pi * (u + v) / math.sqrt(2)) > 0
    if name == "grid":
        return (u - np.floor(u) < 0.35) | (v - np.floor(v) < 0.35)
    if name == "bars":
        return np.sin(2 * np.pi * u) > 0
    if name == "spot":
        return a * a + b * b < 0.45 ** 2
    if name == "zigzag":
        tri = np.abs((u - np.floor(u)) - 0.5)
        return np.sin(2 * np.pi * (v + tri)) > 0
    if name == "frame":
        return np.maximum(np.abs(a), np.abs(b)) > 0.55
    if name == "half":
        return a > 0
    raise ValueError(name)  # pragma: no cover - internal


def _secondary(colour) -> np.ndarray:
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return np.array((25, 25, 25) if luminance > 110 else (235, 235, 235), np.float32)


def _paint_marking(canvas, region, grid, cx, cy, width, pattern, colour, rng) -> None:
    primary = np.clip(np.asarray(colour, np.float32) + rng.uniform(-10, 10, 3), 0, 255)
    secondary = _secondary(primary)
    second = _pattern(pattern, grid, cx, cy, width)
    canvas[region & ~second] = primary
    canvas[region & second] = secondary


def _body_style(rng, cls, background_mean, options, num_classes):
    """Colour and texture of a body: the class's preferred style with prob. specificity, else pooled."""
    pool = len(_BODY_COLOURS)
    if cls is not None and rng.random() < options["body_class_specificity"]:
        colour_index, texture = (3 * cls) % pool, _BODY_TEXTURES[cls % len(_BODY_TEXTURES)]
    else:
        colour_index = int(rng.integers(pool))
        texture = _BODY_TEXTURES[int(rng.integers(len(_BODY_TEXTURES)))]
    jitter = rng.uniform(-12, 12, 3).astype(np.float32)
    colour = np.clip(_BODY_COLOURS[colour_index] + jitter, 0, 255)
    contrast = options["body_contrast"]
    if np.linalg.norm(colour - background_mean) < contrast:
        candidates = np.clip(_BODY_COLOURS + jitter, 0, 255)
        distance = np.linalg.norm(candidates - background_mean, axis=1)
        good = np.flatnonzero(distance >= contrast)
        colour = candidates[rng.choice(good)] if good.size else candidates[int(np.argmax(distance))]
    return colour, texture


def _paint_body(canvas, mask, grid, colour, texture, rng) -> None:
    s = grid.size
    if texture == "flat":
        shade = np.zeros((s, s), np.float32)
    elif texture == "mottled":
        shade = (_value_noise(rng, s, int(rng.integers(4, 9))) - 0.5) * 30
    elif texture == "striped":
        dx, dy = _unit(rng)
        shade = 9 * np.sin(2 * np.pi * (grid.xx * dx + grid.yy * dy) / rng.uniform(4, 10))
    elif texture == "speckled":
        shade = rng.normal(0, 9, (s, s)).astype(np.float32)
    else:  # shaded: a lighting gradient across the body
        dx, dy = _unit(rng)
        proj = grid.xx * dx + grid.yy * dy
        inside = proj[mask]
        lo, hi = float(inside.min()), float(inside.max())
        shade = ((proj - lo) / max(hi - lo, 1.0) - 0.5) * 40
    canvas[mask] = np.clip(colour + shade[mask][:, None], 0, 255)


def _box_sums(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of `mask` in every width x width box, indexed by the box's top-left corner."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
    integral[1:, 1:] = mask.astype(np.int32).cumsum(0).cumsum(1)
    return (integral[width:, width:] - integral[:-width, width:]
            - integral[width:, :-width] + integral[:-width, :-width])


def _place_part(rng, mask, grid, area):
    """A marking region of about `area` pixels inside `mask`: (region, cx, cy, width)."""
    disc = rng.random() < 0.5
    width = max(3, int(round(math.sqrt(4 * area / math.pi) if disc else math.sqrt(area))))
    width = min(width, grid.size)
    sums = _box_sums(mask, width)
    ys, xs = np.nonzero(sums >= sums.max() * 0.999 if sums.max() < width * width else sums == width * width)
    pick = int(rng.integers(len(ys)))
    top, left = ys[pick], xs[pick]
    cy, cx = top + (width - 1) / 2, left + (width - 1) / 2
    if disc:
        shape = (grid.xx - cx) ** 2 + (grid.yy - cy) ** 2 <= (width / 2) ** 2
    else:
        shape = np.zeros_like(mask)
        shape[top:top + width, left:left + width] = True
    return shape & mask, cx, cy, width


def _wrong_marking(rng, num_classes):
    """A marking of no class: a class colour with another pattern, or a spare colour."""
    if rng.random() < 0.6:
        colour_of = int(rng.integers(num_classes))
        choices = [p for i, p in enumerate(_PATTERNS) if i != colour_of]
        return MARKINGS[colour_of][1], choices[int(rng.integers(len(choices)))]
    colour = _SPARE_MARKING_COLOURS[int(rng.integers(len(_SPARE_MARKING_COLOURS)))]
    return colour, _PATTERNS[int(rng.integers(len(_PATTERNS)))]


# --------------------------------------------------------------------------- one image


def _place(rng, grid, area, centre_region=None, near=None, clip_ok=False):
    """Rasterise a random shape of `area` pixels; returns the mask or None if it leaves the frame."""
    s = grid.size
    vertices = _shape(rng) * math.sqrt(area)
    reach = float(np.abs(vertices).max())
    if near is not None:
        (ncx, ncy), nradius = near
        dx, dy = _unit(rng)
        distance = (nradius + math.sqrt(area / math.pi)) * rng.uniform(0.55, 0.95)
        cx, cy = ncx + dx * distance, ncy + dy * distance
    elif centre_region is not None:
        ys, xs = np.nonzero(centre_region)
        pick = int(rng.integers(len(ys)))
        cx, cy = xs[pick] + rng.uniform(-0.5, 0.5), ys[pick] + rng.uniform(-0.5, 0.5)
    else:
        margin = min(0.7 * reach, 0.45 * s)
        cx, cy = rng.uniform(margin, s - margin, 2)
    mask = _raster(vertices + (cx, cy), s)
    inside = int(mask.sum())
    if inside == 0 or (not clip_ok and inside < 0.8 * area):
        return None, (cx, cy)
    return mask, (cx, cy)


def _render(rng, grid: _Grid, options: dict) -> dict:
    s = grid.size
    npix = s * s
    num_classes = options["num_classes"]
    weights = class_weights(num_classes, options["class_imbalance"])
    context = options["context_class"]

    count = int(rng.integers(options["objects_per_image"][0], options["objects_per_image"][1] + 1))
    classes = [int(c) for c in rng.choice(num_classes, size=count, p=weights)]
    lo, hi = options["object_area"]
    areas = np.exp(rng.uniform(math.log(lo), math.log(hi), count))
    if areas.sum() > 0.7:
        areas = np.maximum(areas * (0.7 / areas.sum()), lo)
    order = np.argsort(-areas, kind="stable")  # larger objects first (behind)
    classes = [classes[i] for i in order]
    areas = [float(areas[i]) * npix for i in order]
    water = rng.random() < (options["context_bias"] if context in classes else options["context_texture_rate"])
    background, water_region, family = _background(rng, grid, water)

    # ---- objects: placement with bounded occlusion
    objects = []  # dicts: cls, mask, part, centre, radius
    occupied = np.zeros((s, s), bool)
    for cls, area in zip(classes, areas):
        want_overlap = bool(objects) and rng.random() < options["overlap"]
        region = None
        if water_region is not None and cls == context and water_region.mean() < 1:
            region = water_region
        placed = None
        for attempt in range(40):
            scale = 1.0 if attempt < 15 else 0.88 ** (attempt - 14)
            near = None
            if want_overlap and attempt < 30:
                other = objects[int(rng.integers(len(objects)))]
                near = (other["centre"], other["radius"])
            mask, centre = _place(rng, grid, area * scale, region if attempt < 30 else None, near,
                                  clip_ok=not objects and attempt >= 20)
            if mask is None:
                continue
            if objects:
                if not want_overlap and attempt < 30 and (mask & occupied).any():
                    continue
                ok = True
                for other in objects:
                    hidden = (other["hidden"] | mask) & other["mask"]
                    if hidden.sum() > options["max_occlusion"] * other["mask"].sum() \
                            or (hidden & other["part"]).sum() > 0.5 * other["part"].sum():
                        ok = False
                        break
                if not ok:
                    continue
            placed = (mask, centre, area * scale)
            break
        if placed is None:
            continue
        mask, centre, area = placed
        part_pixels = options["part_area"] * rng.uniform(0.8, 1.2) * mask.sum()
        part, pcx, pcy, pwidth = _place_part(rng, mask, grid, part_pixels)
        for other in objects:
            other["hidden"] |= mask
        objects.append({"cls": cls, "mask": mask, "part": part, "centre": centre,
                        "radius": math.sqrt(area / math.pi), "hidden": np.zeros((s, s), bool),
                        "marking": (pcx, pcy, pwidth)})
        occupied |= mask

    # ---- distractors (drawn first, under the objects; mostly in free space)
    distractors = []
    for _ in range(int(rng.integers(options["distractors"][0], options["distractors"][1] + 1))):
        kind = ("body", "marking", "patch")[int(rng.integers(3))]
        frac = math.exp(rng.uniform(math.log(0.004), math.log(0.02))) if kind == "patch" \
            else math.exp(rng.uniform(math.log(0.02), math.log(0.15)))
        for _attempt in range(15):
            mask, _centre = _place(rng, grid, frac * npix)
            if mask is not None and (mask & occupied).sum() <= 0.3 * mask.sum():
                distractors.append((kind, mask))
                break

    # ---- paint
    canvas = background.copy()
    for kind, mask in distractors:
        if kind == "patch":
            ys, xs = np.nonzero(mask)
            width = max(3.0, math.sqrt(mask.sum()))
            colour, pattern = _wrong_marking(rng, num_classes)
            _paint_marking(canvas, mask, grid, xs.mean(), ys.mean(), width, pattern, colour, rng)
            continue
        colour, texture = _body_style(rng, None, background[mask].mean(0), options, num_classes)
        _paint_body(canvas, mask, grid, colour, texture, rng)
        if kind == "marking":
            part, cx, cy, width = _place_part(rng, mask, grid, options["part_area"] * rng.uniform(0.8, 1.2)
                                              * mask.sum())
            colour, pattern = _wrong_marking(rng, num_classes)
            _paint_marking(canvas, part, grid, cx, cy, width, pattern, colour, rng)
    instances = np.zeros((s, s), np.int32)
    for k, obj in enumerate(objects, 1):
        colour, texture = _body_style(rng, obj["cls"], background[obj["mask"]].mean(0), options, num_classes)
        _paint_body(canvas, obj["mask"], grid, colour, texture, rng)
        cx, cy, width = obj["marking"]
        name, marking_colour, pattern = MARKINGS[obj["cls"]]
        _paint_marking(canvas, obj["part"], grid, cx, cy, width, pattern, marking_colour, rng)
        instances[obj["mask"]] = k

    # global lighting and sensor noise
    dx, dy = _unit(rng)
    light = 1 + rng.uniform(0, 0.12) * ((grid.xx * dx + grid.yy * dy) / s)
    canvas = canvas * light[..., None]
    if options["pixel_noise"] > 0:
        canvas = canvas + rng.normal(0, options["pixel_noise"], canvas.shape)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)

    label = np.zeros((s, s), np.uint8)
    visible_masks, part_fractions, object_areas = [], [], []
    marking = np.zeros((s, s), bool)
    for k, obj in enumerate(objects, 1):
        visible = instances == k
        visible_masks.append(visible)
        label[visible] = obj["cls"] + 1
        marking |= obj["part"] & visible
        if visible.any():
            part_fractions.append(float((obj["part"] & visible).sum() / visible.sum()))
            object_areas.append(float(visible.sum() / npix))

    # ---- saliency: an imperfect detector
    saliency = np.zeros((s, s), np.float32)
    for visible in visible_masks:
        if not visible.any() or rng.random() < options["saliency_object_miss"]:
            continue
        strength = rng.uniform(0.7, 1.0)
        if rng.random() < options["saliency_part_miss"]:
            dx, dy = _unit(rng)
            proj = grid.xx * dx + grid.yy * dy
            cut = np.quantile(proj[visible], 1 - rng.uniform(0.2, 0.5))
            visible = visible & (proj < cut)
        saliency = np.maximum(saliency, strength * visible)
    foreground = instances > 0
    for kind, mask in distractors:
        if rng.random() < options["saliency_distractor"]:
            saliency = np.maximum(saliency, rng.uniform(0.6, 0.95) * (mask & ~foreground))
    saliency = _blur(saliency, options["saliency_blur"])
    if options["saliency_noise"] > 0:
        saliency = saliency + (_value_noise(rng, s, 4) - 0.5) * 2 * options["saliency_noise"]
    saliency = np.clip(np.round(np.clip(saliency, 0, 1) * 255), 0, 255).astype(np.uint8)

    if options["ignore_band"] > 0:
        label = _ignore_band(label, options["ignore_band"])
    valid = label != IGNORE_INDEX
    truth = (label > 0) & valid
    predicted = (saliency >= 128) & valid
    union = (truth | predicted).sum()
    iou = float((truth & predicted).sum() / union) if union else 1.0

    return {"image": image, "label": label, "saliency": saliency, "parts": encode_parts(instances, marking),
            "part_fractions": part_fractions, "object_areas": object_areas,
            "object_classes": [obj["cls"] for obj in objects],
            "saliency_iou": iou, "water": bool(water), "background": family,
            "distractors": len(distractors)}


def _ignore_band(label: np.ndarray, width: int) -> np.ndarray:
    """Mark pixels within `width` (chessboard distance) of a label change as IGNORE_INDEX."""
    padded = np.pad(label, width, mode="edge")
    h, w = label.shape
    edge = np.zeros(label.shape, bool)
    for dy in range(-width, width + 1):
        for dx in range(-width, width + 1):
            if dy or dx:
                edge |= padded[width + dy:width + dy + h, width + dx:width + dx + w] != label
    out = label.copy()
    out[edge] = IGNORE_INDEX
    return out


def _split_id(split: str) -> int:
    return zlib.crc32(split.encode("utf-8"))


def generate_sample(split: str, index: int, seed: int, options: dict | None = None) -> dict:
    """One image of a split in memory: image (H, W, 3), label (H, W), saliency (H, W), and its stats.

    Exactly what `generate_dataset` writes for that (split, index, seed, options), before JPEG.
    """
    options = resolve_options(options)
    return _sample(_Grid(options["image_size"]), split, index, seed, options)


def _sample(grid, split, index, seed, options):
    for attempt in range(100):
        entropy = [seed, _split_id(split), index] + ([attempt] if attempt else [])
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        sample = _render(rng, grid, options)
        if tags_from_label(sample["label"], options["num_classes"]):
            return sample
    raise RuntimeError(f"could not generate an image with a visible object for {split} {index}")  # pragma: no cover


# --------------------------------------------------------------------------- dataset


def _quantiles(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "mean": None, "quantiles": {f"q{int(q * 100):02d}": None for q in _QUANTILES}}
    return {"count": int(values.size), "mean": round(float(values.mean()), 6),
            "quantiles": {f"q{int(q * 100):02d}": round(float(np.quantile(values, q)), 6) for q in _QUANTILES}}


def _split_diagnostics(records, options, names) -> dict:
    c = options["num_classes"]
    context = options["context_class"]
    present = np.zeros((len(records), c), bool)
    for row, record in enumerate(records):
        present[row, record["tags"]] = True
    cooccurrence = present.T.astype(np.int64) @ present.astype(np.int64)
    frequency = present.sum(0)
    areas = [a for r in records for a in r["object_areas"]]
    edges = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 1.0]
    area_stats = _quantiles(areas)
    area_stats["histogram"] = {"edges": edges,
                               "counts": [int(n) for n in np.histogram(np.clip(areas, 0, 1), bins=edges)[0]]}
    water = np.array([r["water"] for r in records], bool)
    per_class_rate = [round(float(water[present[:, k]].mean()), 6) if present[:, k].any() else None
                      for k in range(c)]
    without = ~present[:, context]
    objects = [len(r["object_areas"]) for r in records]
    textures: dict[str, int] = {}
    for r in records:
        textures[r["background"]] = textures.get(r["background"], 0) + 1
    return {
        "num_images": len(records),
        "class_frequency": [int(n) for n in frequency],
        "class_frequency_by_name": {name: int(n) for name, n in zip(names, frequency)},
        "cooccurrence": [[int(n) for n in row] for row in cooccurrence],
        "objects_per_image": {"mean": round(float(np.mean(objects)), 6) if objects else None,
                              "histogram": {str(k): objects.count(k) for k in sorted(set(objects))}},
        "object_area": area_stats,
        "saliency_iou": _quantiles([r["saliency_iou"] for r in records]),
        "part_fraction": _quantiles([p for r in records for p in r["part_fractions"]]),
        "context": {
            "class": context,
            "class_name": names[context],
            "texture": CONTEXT_TEXTURE,
            "images_with_class": int(present[:, context].sum()),
            "class_on_texture": int((present[:, context] & water).sum()),
            "rate_class_on_texture": per_class_rate[context],
            "rate_texture_without_class": round(float(water[without].mean()), 6) if without.any() else None,
            "rate_on_texture_by_class": per_class_rate,
        },
        "distractors": {"total": int(sum(r["distractors"] for r in records)),
                        "mean": round(float(np.mean([r["distractors"] for r in records])), 6) if records else None},
        "background_textures": dict(sorted(textures.items())),
    }


def _check_splits(splits) -> dict[str, int]:
    if not isinstance(splits, dict) or not splits:
        raise ValueError(f"splits must be a non-empty dict {{name: number of images}}, got {splits!r}")
    out = {}
    for name, count in splits.items():
        if not isinstance(name, str) or not name or any(ch.isspace() or ch in "/\\" for ch in name) \
                or name.startswith("."):
            raise ValueError(f"bad split name {name!r}")
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"split {name!r}: the number of images must be a non-negative integer, got {count!r}")
        out[name] = int(count)
    return out


def generate_dataset(root, splits: dict[str, int], seed: int, options: dict | None = None) -> dict:
    """Write the synthetic dataset in VOC layout at `root` (which must not exist); return diagnostics.

    `splits` maps split names to image counts, e.g. {"train": 600, "val": 200}; `options`
    overrides DEFAULTS (unknown keys raise ValueError). The dataset is built in a temporary
    sibling directory and renamed onto `root` only when complete.
    """
    options = resolve_options(options)
    splits = _check_splits(splits)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root = Path(root)
    if root.exists() or root.is_symlink():
        raise FileExistsError(f"dataset root {root} already exists")
    with atomic_directory(root) as temporary:
        diagnostics = _build(temporary, splits, seed, options)
    return diagnostics


def _build(out: Path, splits: dict[str, int], seed: int, options: dict) -> dict:
    for sub in ("JPEGImages", "SegmentationClass", "saliency", PARTS_FOLDER, "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True)
    names = class_names(options["num_classes"])
    grid = _Grid(options["image_size"])
    per_split = {}
    for split, count in splits.items():
        image_names, tags, records = [], {}, []
        for index in range(count):
            name = f"{split}_{index:06d}"
            sample = _sample(grid, split, index, seed, options)
            Image.fromarray(sample["image"], mode="RGB").save(
                out / "JPEGImages" / f"{name}.jpg", format="JPEG", quality=options["jpeg_quality"],
                subsampling=0)
            write_label_png(out / "SegmentationClass" / f"{name}.png", sample["label"], atomic=False)
            Image.fromarray(sample["saliency"], mode="L").save(out / "saliency" / f"{name}.png", format="PNG")
            Image.fromarray(sample["parts"], mode="L").save(out / PARTS_FOLDER / f"{name}.png", format="PNG")
            image_tags = tags_from_label(sample["label"], options["num_classes"])
            image_names.append(name)
            tags[name] = image_tags
            records.append({**{k: v for k, v in sample.items() if k not in ("image", "label", "saliency", "parts")},
                            "tags": image_tags})
        write_lines(out / "ImageSets" / "Segmentation" / f"{split}.txt", image_names)
        write_class_list(out / "ImageSets" / "Segmentation" / f"{split}_cls.txt", tags)
        per_split[split] = _split_diagnostics(records, options, names)

    write_lines(out / "classes.txt", ["background", *names])
    weights = class_weights(options["num_classes"], options["class_imbalance"])
    diagnostics = {
        "generator": GENERATOR,
        "seed": seed,
        "class_names": names,
        "class_weights": [round(float(w), 6) for w in weights],
        "context_class": names[options["context_class"]],
        "context_texture": CONTEXT_TEXTURE,
        "splits": per_split,
    }
    dataset = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "splits": splits,
               "options": options, "class_names": ["background", *names],
               "class_weights": diagnostics["class_weights"],
               "context_class": names[options["context_class"]], "context_texture": CONTEXT_TEXTURE}
    for filename, payload in (("dataset.json", dataset), ("diagnostics.json", diagnostics)):
        with open(out / filename, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return diagnostics
