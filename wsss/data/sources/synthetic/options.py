"""The generator's options (`DEFAULTS`, checked by `resolve_options`) and its class tables: each class's marking
and body style, for the target classes and for the pretraining stand-in's own classes."""

from __future__ import annotations

import numpy as np

DEFAULTS: dict = {
    # side of the square images, in pixels
    "image_size": 128,
    # number of object classes (1..12); target names come from MARKINGS, e.g. "red_stripes"
    "num_classes": 6,
    # which classes the images show: "target" (the dataset's own) or "pretrain" (PRETRAIN_CLASSES other
    # classes with markings and body styles of the same kinds: the pretraining stand-in for ImageNet)
    "class_set": "target",
    # inclusive range of the number of objects per image (uniform)
    "objects_per_image": [1, 3],
    # range of an object's area as a fraction of the image (log-uniform; visible area can be
    # smaller after occlusion or clipping at the image border)
    "object_area": [0.05, 0.6],
    # fraction of an object's area covered by its discriminative marking (jittered +-20%)
    "part_area": 0.08,
    # probability that an object shows no marking (its body is the whole object)
    "hidden_markings": 0.0,
    # where a marking sits: "edge" (among the places farthest from the object's centre, as a head or a wheel
    # sits at one end of a real object) or "anywhere" it fits
    "marking_position": "edge",
    # "class": every body wears its class's style, the same across images (a colour family, a texture
    # orientation and a period, each shared with other classes, together the class's own): bodies other
    # images can explain;
    # "pool": bodies drawn from a pool shared by all classes, the class's style only with probability
    # body_class_specificity (the earlier design, where a body's class follows from its marking alone)
    "body_style": "class",
    # "class" style: amplitude (0..255 scale) of the body's texture (its orientation and period are class cues)
    "body_texture_contrast": 10.0,
    # "class" style: how far (0..255 per channel, uniform) a body's colour strays from its class's family colour
    "body_colour_spread": 45.0,
    # "class" style: the range (0..255) of a lighting gradient across each body in a random direction, so that a
    # body is not one flat colour a CRF fills from any seed
    "body_shading": 60.0,
    # "pool" style: probability that a body takes its class's preferred colour and texture
    "body_class_specificity": 0.3,
    # least RGB distance between a body's colour and the mean background beneath it
    "body_contrast": 35.0,
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

# The earlier generator's design, reachable through its options: bodies from a pool shared by all classes (so
# a body's class follows from its marking alone), markings anywhere and larger, smaller images.
EARLIER_DESIGN = {"image_size": 96, "object_area": [0.03, 0.45], "part_area": 0.2, "marking_position": "anywhere",
                  "body_style": "pool", "body_contrast": 60.0}

# (name, marking colour, pattern); target class i gets MARKINGS[i]
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
PATTERNS = tuple(marking[2] for marking in MARKINGS)
# marking colours no class uses (for distractor patches)
SPARE_MARKING_COLOURS = ((140, 255, 200), (255, 60, 120), (90, 160, 255), (230, 200, 255))

# Body colour families of the "class" style: each is shared by several classes, so colour alone does not
# tell a class; families 0-2 dress the target classes, 3-5 the pretraining classes.
BODY_FAMILIES = np.array([(176, 146, 108), (108, 122, 148), (128, 138, 88),
                          (150, 110, 130), (96, 140, 132), (160, 160, 150)], dtype=np.float32)
# Distractor bodies wear neither: greys and dull browns with an isotropic (unoriented) texture.
NEUTRAL_BODY_COLOURS = np.array([(120, 120, 120), (150, 140, 130), (90, 85, 80), (185, 180, 175)], np.float32)
# body pool of the "pool" style (the earlier design), shared by all classes
POOL_BODY_COLOURS = np.array([
    (150, 105, 65), (120, 120, 120), (125, 135, 60), (210, 180, 130), (85, 105, 150),
    (190, 125, 135), (55, 95, 65), (195, 150, 55), (60, 50, 45), (215, 210, 195),
], dtype=np.float32)
POOL_BODY_TEXTURES = ("flat", "mottled", "striped", "speckled", "shaded")

PRETRAIN_CLASSES = 12


# Body textures of the "class" style: faint stripes of one of three orientations, each unchanged by a horizontal
# flip (the training augmentation), at one of a few periods (pixels at 128, scaled with the image).
BODY_TEXTURE_KINDS = ("horizontal", "vertical", "crossed")
TARGET_BODY_PERIODS = (4.0, 8.0, 5.5, 11.0)
PRETRAIN_BODY_PERIODS = (5.0, 9.5)


def target_body_style(cls: int) -> dict:
    """Target class `cls`'s body: texture kind cls % 3, period by cls // 3, colour family (cls + cls // 3) % 3.
    No single cue names a class (two of six classes share a colour family, two a texture kind, three a period);
    their combination does."""
    return {"family": (cls + cls // 3) % 3, "kind": BODY_TEXTURE_KINDS[cls % 3],
            "period": TARGET_BODY_PERIODS[(cls // 3) % len(TARGET_BODY_PERIODS)] / 128}


def pretrain_body_style(cls: int) -> dict:
    """Pretraining class `cls`'s body: the same kinds of cue with other values (colour families 3-5, periods
    between the target classes')."""
    return {"family": 3 + (cls + cls // 3) % 3, "kind": BODY_TEXTURE_KINDS[cls % 3],
            "period": PRETRAIN_BODY_PERIODS[(cls // 3) % len(PRETRAIN_BODY_PERIODS)] / 128}


def pretrain_marking(cls: int) -> tuple[str, tuple[int, int, int], str]:
    """Pretraining class `cls`'s marking: a colour of MARKINGS with a pattern other than that colour's own
    (so no pretraining class wears a target class's marking)."""
    colour_index = cls % MAX_CLASSES
    pattern = PATTERNS[(colour_index + 1 + cls // MAX_CLASSES + 4) % MAX_CLASSES]
    name, colour, _ = MARKINGS[colour_index]
    return f"pre_{name.split('_')[0]}_{pattern}", colour, pattern


def class_table(options: dict) -> list[dict]:
    """Per class of the images: name, marking colour, marking pattern and body style."""
    if options["class_set"] == "pretrain":
        return [dict(zip(("name", "colour", "pattern"), pretrain_marking(cls)), body=pretrain_body_style(cls))
                for cls in range(options["num_classes"])]
    return [{"name": MARKINGS[cls][0], "colour": MARKINGS[cls][1], "pattern": MARKINGS[cls][2],
             "body": target_body_style(cls)} for cls in range(options["num_classes"])]


def class_names(num_classes: int, class_set: str = "target") -> list[str]:
    """The names of the first `num_classes` object classes (background not included)."""
    limit = PRETRAIN_CLASSES if class_set == "pretrain" else MAX_CLASSES
    if not 1 <= num_classes <= limit:
        raise ValueError(f"num_classes must lie in 1..{limit}, got {num_classes}")
    return [entry["name"] for entry in class_table({**DEFAULTS, "num_classes": num_classes, "class_set": class_set})]


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


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"option {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def resolve_options(options: dict | None = None) -> dict:
    """DEFAULTS overridden by `options`, validated; unknown keys raise ValueError naming them."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown synthetic dataset option(s): {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(DEFAULTS)}")
    o = {**DEFAULTS, **options}
    class_set = _choice("class_set", o["class_set"], ("target", "pretrain"))
    out = {
        "image_size": _number("image_size", o["image_size"], int, 16, 1024),
        "num_classes": _number("num_classes", o["num_classes"], int, 1,
                               PRETRAIN_CLASSES if class_set == "pretrain" else MAX_CLASSES),
        "class_set": class_set,
        "objects_per_image": _range("objects_per_image", o["objects_per_image"], int, 1, 8),
        "object_area": _range("object_area", o["object_area"], float, 0.005, 0.8),
        "part_area": _number("part_area", o["part_area"], float, 0.02, 0.8),
        "hidden_markings": _number("hidden_markings", o["hidden_markings"], float, 0, 1),
        "marking_position": _choice("marking_position", o["marking_position"], ("edge", "anywhere")),
        "body_style": _choice("body_style", o["body_style"], ("class", "pool")),
        "body_texture_contrast": _number("body_texture_contrast", o["body_texture_contrast"], float, 0, 128),
        "body_colour_spread": _number("body_colour_spread", o["body_colour_spread"], float, 0, 128),
        "body_shading": _number("body_shading", o["body_shading"], float, 0, 255),
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
