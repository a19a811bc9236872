"""What objects and distractors look like: markings (a class's saturated colour in a class pattern) and bodies
(the class's style in the "class" design, a pooled style in the "pool" one, a neutral style for distractors)."""

from __future__ import annotations

import math

import numpy as np

from .noise import Grid, unit_vector, value_noise
from .options import BODY_FAMILIES, MARKINGS, NEUTRAL_BODY_COLOURS, PATTERNS, POOL_BODY_COLOURS, \
    POOL_BODY_TEXTURES, SPARE_MARKING_COLOURS


def marking_pattern(name: str, grid: Grid, cx: float, cy: float, width: float) -> np.ndarray:
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


def paint_marking(canvas, region, grid, cx, cy, width, pattern, colour, rng) -> None:
    primary = np.clip(np.asarray(colour, np.float32) + rng.uniform(-10, 10, 3), 0, 255)
    secondary = _secondary(primary)
    second = marking_pattern(pattern, grid, cx, cy, width)
    canvas[region & ~second] = primary
    canvas[region & second] = secondary


def wrong_marking(rng, classes: list[dict]):
    """A marking of no class: a colour with a pattern that no class pairs with it, or a spare colour."""
    if rng.random() < 0.6:
        colour = MARKINGS[int(rng.integers(len(MARKINGS)))][1]
        taken = {entry["pattern"] for entry in classes if tuple(entry["colour"]) == tuple(colour)}
        choices = [pattern for pattern in PATTERNS if pattern not in taken]
        return colour, choices[int(rng.integers(len(choices)))]
    colour = SPARE_MARKING_COLOURS[int(rng.integers(len(SPARE_MARKING_COLOURS)))]
    return colour, PATTERNS[int(rng.integers(len(PATTERNS)))]


def _with_contrast(colour: np.ndarray, background_mean: np.ndarray, contrast: float) -> np.ndarray:
    """`colour` made lighter or darker (its hue kept) until it is `contrast` away from the background."""
    if np.linalg.norm(colour - background_mean) >= contrast:
        return colour
    candidates = [np.clip(colour * scale, 0, 255) for scale in (0.7, 1.3, 0.55, 1.5, 0.4, 1.7)]
    distances = [np.linalg.norm(candidate - background_mean) for candidate in candidates]
    good = [candidate for candidate, distance in zip(candidates, distances) if distance >= contrast]
    return good[0] if good else candidates[int(np.argmax(distances))]


def class_body_style(rng, body: dict, background_mean, options) -> dict:
    """A body in its class's style: the class's colour family (jittered; lighter or darker where it would vanish
    into the background) and faint stripes of the class's orientation and period."""
    spread = options["body_colour_spread"]
    colour = np.clip(BODY_FAMILIES[body["family"]] + rng.uniform(-spread, spread, 3), 0, 255).astype(np.float32)
    return {"texture": body["kind"], "colour": _with_contrast(colour, background_mean, options["body_contrast"]),
            "period": body["period"] * options["image_size"] * rng.uniform(0.92, 1.08),
            "amplitude": options["body_texture_contrast"], "shading": options["body_shading"]}


def neutral_body_style(rng, background_mean, options) -> dict:
    """A distractor's body: a neutral colour no class family uses, with an unoriented mottled texture."""
    colour = NEUTRAL_BODY_COLOURS[int(rng.integers(len(NEUTRAL_BODY_COLOURS)))] + rng.uniform(-10, 10, 3)
    return {"texture": "mottled", "colour": _with_contrast(colour.astype(np.float32), background_mean,
                                                           options["body_contrast"])}


def pool_body_style(rng, cls, background_mean, options) -> dict:
    """The earlier design's body: the class's preferred pool colour and texture with probability
    `body_class_specificity`, else a uniform draw from the pool shared by all classes."""
    pool = len(POOL_BODY_COLOURS)
    if cls is not None and rng.random() < options["body_class_specificity"]:
        colour_index, texture = (3 * cls) % pool, POOL_BODY_TEXTURES[cls % len(POOL_BODY_TEXTURES)]
    else:
        colour_index = int(rng.integers(pool))
        texture = POOL_BODY_TEXTURES[int(rng.integers(len(POOL_BODY_TEXTURES)))]
    jitter = rng.uniform(-12, 12, 3).astype(np.float32)
    colour = np.clip(POOL_BODY_COLOURS[colour_index] + jitter, 0, 255)
    contrast = options["body_contrast"]
    if np.linalg.norm(colour - background_mean) < contrast:
        candidates = np.clip(POOL_BODY_COLOURS + jitter, 0, 255)
        distance = np.linalg.norm(candidates - background_mean, axis=1)
        good = np.flatnonzero(distance >= contrast)
        colour = candidates[rng.choice(good)] if good.size else candidates[int(np.argmax(distance))]
    return {"texture": texture, "colour": colour}


def paint_body(canvas, mask, grid, style: dict, rng) -> None:
    """Fill `mask` with the style's colour and texture."""
    s, texture = grid.size, style["texture"]
    if texture == "flat":
        shade = np.zeros((s, s), np.float32)
    elif texture == "mottled":
        shade = (value_noise(rng, s, int(rng.integers(4, 9))) - 0.5) * 30
    elif texture == "striped":
        dx, dy = unit_vector(rng)
        shade = 9 * np.sin(2 * np.pi * (grid.xx * dx + grid.yy * dy) / rng.uniform(4, 10))
    elif texture == "speckled":
        shade = rng.normal(0, 9, (s, s)).astype(np.float32)
    elif texture in ("horizontal", "vertical", "crossed"):
        shade = _class_texture(texture, grid, style["period"], style["amplitude"], rng)
        if style["shading"] > 0:
            shade = shade + _gradient_across(mask, grid, rng) * style["shading"]
    else:  # shaded: a lighting gradient across the body
        shade = _gradient_across(mask, grid, rng) * 40
    canvas[mask] = np.clip(style["colour"] + shade[mask][:, None], 0, 255)


def _class_texture(kind: str, grid: Grid, period: float, amplitude: float, rng) -> np.ndarray:
    """Faint stripes across rows ("horizontal"), across columns ("vertical") or both diagonals ("crossed"), with
    mild unoriented noise."""
    def wave(across):
        return np.sin(2 * np.pi * across / period + rng.uniform(0, 2 * np.pi))

    if kind == "horizontal":
        shade = amplitude * wave(grid.yy)
    elif kind == "vertical":
        shade = amplitude * wave(grid.xx)
    else:
        shade = amplitude / 2 * (wave((grid.xx + grid.yy) / math.sqrt(2)) + wave((grid.xx - grid.yy) / math.sqrt(2)))
    return shade + (value_noise(rng, grid.size, 6) - 0.5) * 12


def _gradient_across(mask, grid: Grid, rng) -> np.ndarray:
    """A linear ramp from -0.5 to 0.5 across `mask` in a random direction."""
    dx, dy = unit_vector(rng)
    proj = grid.xx * dx + grid.yy * dy
    inside = proj[mask]
    lo, hi = float(inside.min()), float(inside.max())
    return (proj - lo) / max(hi - lo, 1.0) - 0.5
