"""One image: its layout (objects and distractors in the frame), its paint, its masks and its saliency map.

`render(rng, grid, options)` returns the image, the class mask, the parts map (bodies and markings), the
saliency map and the figures the diagnostics summarise.
"""

from __future__ import annotations

import math

import numpy as np

from ...parts import encode_parts
from ...voc import IGNORE_INDEX
from .backgrounds import background
from .noise import Grid, blur, unit_vector, value_noise
from .options import class_table, class_weights
from .paint import class_body_style, neutral_body_style, paint_body, paint_marking, pool_body_style, wrong_marking
from .shapes import place_marking, place_shape


def render(rng, grid: Grid, options: dict) -> dict:
    classes = class_table(options)
    object_classes, areas = draw_objects(rng, grid, options)
    context = options["context_class"] if options["class_set"] == "target" else None
    water = rng.random() < (options["context_bias"] if context in object_classes else options["context_texture_rate"])
    backdrop, water_region, family = background(rng, grid, water)
    objects = place_objects(rng, grid, options, object_classes, areas, water_region, context)
    distractors = place_distractors(rng, grid, options, objects)
    canvas, instances = paint_scene(rng, grid, options, classes, backdrop, objects, distractors)
    image = photograph(rng, grid, options, canvas)

    label = np.zeros(instances.shape, np.uint8)
    marking = np.zeros(instances.shape, bool)
    visible_masks, part_fractions, object_areas = [], [], []
    for k, obj in enumerate(objects, 1):
        visible = instances == k
        visible_masks.append(visible)
        label[visible] = obj["cls"] + 1
        marking |= obj["part"] & visible
        if visible.any():
            part_fractions.append(float((obj["part"] & visible).sum() / visible.sum()))
            object_areas.append(float(visible.sum() / instances.size))
    saliency = saliency_map(rng, grid, options, visible_masks, distractors, instances > 0)
    if options["ignore_band"] > 0:
        label = ignore_band(label, options["ignore_band"])
    return {"image": image, "label": label, "saliency": saliency, "parts": encode_parts(instances, marking),
            "part_fractions": part_fractions, "object_areas": object_areas,
            "object_classes": [obj["cls"] for obj in objects], "saliency_iou": saliency_iou(label, saliency),
            "water": bool(water), "background": family, "distractors": len(distractors)}


def draw_objects(rng, grid: Grid, options: dict) -> tuple[list[int], list[float]]:
    """The objects' classes and areas in pixels, larger first (they are placed, and hidden, first)."""
    weights = class_weights(options["num_classes"], options["class_imbalance"])
    low, high = options["objects_per_image"]
    count = int(rng.integers(low, high + 1))
    object_classes = [int(c) for c in rng.choice(options["num_classes"], size=count, p=weights)]
    lo, hi = options["object_area"]
    areas = np.exp(rng.uniform(math.log(lo), math.log(hi), count))
    if areas.sum() > 0.7:
        areas = np.maximum(areas * (0.7 / areas.sum()), lo)
    order = np.argsort(-areas, kind="stable")
    return [object_classes[i] for i in order], [float(areas[i]) * grid.size ** 2 for i in order]


def place_objects(rng, grid: Grid, options: dict, object_classes, areas, water_region, context) -> list[dict]:
    """Each object's mask, marking and centre: apart from the others unless it is drawn to touch one, a later
    object hiding at most `max_occlusion` of an earlier one and at most half of its marking; the context class
    inside the water when the water covers part of the image."""
    s = grid.size
    objects = []
    occupied = np.zeros((s, s), bool)
    for cls, area in zip(object_classes, areas):
        want_overlap = bool(objects) and rng.random() < options["overlap"]
        region = water_region if water_region is not None and cls == context and water_region.mean() < 1 else None
        placed = None
        for attempt in range(40):
            scale = 1.0 if attempt < 15 else 0.88 ** (attempt - 14)
            near = None
            if want_overlap and attempt < 30:
                other = objects[int(rng.integers(len(objects)))]
                near = (other["centre"], other["radius"])
            mask, centre = place_shape(rng, grid, area * scale, region if attempt < 30 else None, near,
                                       clip_ok=not objects and attempt >= 20)
            if mask is None:
                continue
            if objects:
                if not want_overlap and attempt < 30 and (mask & occupied).any():
                    continue
                if any(_hides_too_much(mask, other, options) for other in objects):
                    continue
            placed = (mask, centre, area * scale)
            break
        if placed is None:
            continue
        mask, centre, area = placed
        hidden = rng.random() < options["hidden_markings"]
        part_pixels = options["part_area"] * rng.uniform(0.8, 1.2) * mask.sum()
        part, pcx, pcy, pwidth = place_marking(rng, mask, grid, part_pixels, options["marking_position"] == "edge")
        if hidden:
            part = np.zeros_like(mask)
        for other in objects:
            other["hidden"] |= mask
        objects.append({"cls": cls, "mask": mask, "part": part, "centre": centre,
                        "radius": math.sqrt(area / math.pi), "hidden": np.zeros((s, s), bool),
                        "marking": None if hidden else (pcx, pcy, pwidth)})
        occupied |= mask
    return objects


def _hides_too_much(mask, other: dict, options: dict) -> bool:
    hidden = (other["hidden"] | mask) & other["mask"]
    return bool(hidden.sum() > options["max_occlusion"] * other["mask"].sum()
                or (hidden & other["part"]).sum() > 0.5 * other["part"].sum())


def place_distractors(rng, grid: Grid, options: dict, objects: list[dict]) -> list[tuple[str, np.ndarray]]:
    """Shapes of no class, mostly in free space: bare bodies, bodies with a marking of no class, lone patches."""
    occupied = np.zeros((grid.size, grid.size), bool)
    for obj in objects:
        occupied |= obj["mask"]
    distractors = []
    low, high = options["distractors"]
    for _ in range(int(rng.integers(low, high + 1))):
        kind = ("body", "marking", "patch")[int(rng.integers(3))]
        fraction = math.exp(rng.uniform(math.log(0.004), math.log(0.02))) if kind == "patch" \
            else math.exp(rng.uniform(math.log(0.02), math.log(0.15)))
        for _attempt in range(15):
            mask, _centre = place_shape(rng, grid, fraction * grid.size ** 2)
            if mask is not None and (mask & occupied).sum() <= 0.3 * mask.sum():
                distractors.append((kind, mask))
                break
    return distractors


def body_style(rng, options: dict, classes: list[dict], cls: int | None, background_mean) -> dict:
    """An object's body (`cls`) or a distractor's (None) in the configured design."""
    if options["body_style"] == "pool":
        return pool_body_style(rng, cls, background_mean, options)
    if cls is None:
        return neutral_body_style(rng, background_mean, options)
    return class_body_style(rng, classes[cls]["body"], background_mean, options)


def paint_scene(rng, grid: Grid, options: dict, classes: list[dict], backdrop, objects, distractors):
    """The canvas (distractors under the objects, later objects over earlier ones) and which object each pixel
    shows (0 none, k the k-th object)."""
    canvas = backdrop.copy()
    for kind, mask in distractors:
        if kind == "patch":
            ys, xs = np.nonzero(mask)
            colour, pattern = wrong_marking(rng, classes)
            paint_marking(canvas, mask, grid, xs.mean(), ys.mean(), max(3.0, math.sqrt(mask.sum())), pattern, colour,
                          rng)
            continue
        paint_body(canvas, mask, grid, body_style(rng, options, classes, None, backdrop[mask].mean(0)), rng)
        if kind == "marking":
            part, cx, cy, width = place_marking(rng, mask, grid, options["part_area"] * rng.uniform(0.8, 1.2)
                                                * mask.sum())
            colour, pattern = wrong_marking(rng, classes)
            paint_marking(canvas, part, grid, cx, cy, width, pattern, colour, rng)
    instances = np.zeros((grid.size, grid.size), np.int32)
    for k, obj in enumerate(objects, 1):
        paint_body(canvas, obj["mask"], grid, body_style(rng, options, classes, obj["cls"],
                                                          backdrop[obj["mask"]].mean(0)), rng)
        if obj["marking"] is not None:
            cx, cy, width = obj["marking"]
            entry = classes[obj["cls"]]
            paint_marking(canvas, obj["part"], grid, cx, cy, width, entry["pattern"], entry["colour"], rng)
        instances[obj["mask"]] = k
    return canvas, instances


def photograph(rng, grid: Grid, options: dict, canvas: np.ndarray) -> np.ndarray:
    """Global lighting and sensor noise, as uint8."""
    dx, dy = unit_vector(rng)
    light = 1 + rng.uniform(0, 0.12) * ((grid.xx * dx + grid.yy * dy) / grid.size)
    canvas = canvas * light[..., None]
    if options["pixel_noise"] > 0:
        canvas = canvas + rng.normal(0, options["pixel_noise"], canvas.shape)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def saliency_map(rng, grid: Grid, options: dict, visible_masks, distractors, foreground) -> np.ndarray:
    """An imperfect detector's map: soft boundaries, objects at varying strength, a chunk of an object or a
    whole object missed, distractors marked salient, low-frequency noise."""
    s = grid.size
    saliency = np.zeros((s, s), np.float32)
    for visible in visible_masks:
        if not visible.any() or rng.random() < options["saliency_object_miss"]:
            continue
        strength = rng.uniform(0.7, 1.0)
        if rng.random() < options["saliency_part_miss"]:
            dx, dy = unit_vector(rng)
            proj = grid.xx * dx + grid.yy * dy
            cut = np.quantile(proj[visible], 1 - rng.uniform(0.2, 0.5))
            visible = visible & (proj < cut)
        saliency = np.maximum(saliency, strength * visible)
    for _kind, mask in distractors:
        if rng.random() < options["saliency_distractor"]:
            saliency = np.maximum(saliency, rng.uniform(0.6, 0.95) * (mask & ~foreground))
    saliency = blur(saliency, options["saliency_blur"])
    if options["saliency_noise"] > 0:
        saliency = saliency + (value_noise(rng, s, 4) - 0.5) * 2 * options["saliency_noise"]
    return np.clip(np.round(np.clip(saliency, 0, 1) * 255), 0, 255).astype(np.uint8)


def saliency_iou(label: np.ndarray, saliency: np.ndarray) -> float:
    """IoU of the saliency map (>= 128) with the labelled foreground."""
    valid = label != IGNORE_INDEX
    truth = (label > 0) & valid
    predicted = (saliency >= 128) & valid
    union = (truth | predicted).sum()
    return float((truth & predicted).sum() / union) if union else 1.0


def ignore_band(label: np.ndarray, width: int) -> np.ndarray:
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
