"""What the prepare step reports about a generated split (diagnostics.json): images, class frequencies and
co-occurrence, object areas, saliency quality, the share of each object its marking covers, the context
texture's rates, distractors and background families."""

from __future__ import annotations

import numpy as np

from .backgrounds import CONTEXT_TEXTURE

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _quantiles(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "mean": None, "quantiles": {f"q{int(q * 100):02d}": None for q in _QUANTILES}}
    return {"count": int(values.size), "mean": round(float(values.mean()), 6),
            "quantiles": {f"q{int(q * 100):02d}": round(float(np.quantile(values, q)), 6) for q in _QUANTILES}}


def split_diagnostics(records, options, names) -> dict:
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
