"""Tests of the built-in synthetic dataset generator (wsss.data.sources.synthetic)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.sources import synthetic
from wsss.data.sources.synthetic import DEFAULTS, generate_dataset, generate_sample, resolve_options
from wsss.data.voc import IGNORE_INDEX, VOCLayout, read_grey, read_label_png, tags_from_label

TINY = {"image_size": 64}
SMALL_SPLITS = {"train": 30, "val": 10}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "ds"
    diagnostics = generate_dataset(root, SMALL_SPLITS, seed=3, options=TINY)
    return root, diagnostics


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """~200 images for the statistical checks (seed 0)."""
    root = tmp_path_factory.mktemp("large") / "ds"
    diagnostics = generate_dataset(root, {"train": 200}, seed=0, options=TINY)
    return root, diagnostics


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _foreground_iou(label: np.ndarray, saliency: np.ndarray) -> float:
    valid = label != IGNORE_INDEX
    truth = (label > 0) & valid
    predicted = (saliency >= 128) & valid
    union = (truth | predicted).sum()
    return float((truth & predicted).sum() / union) if union else 1.0


# --------------------------------------------------------------------------- layout


def test_layout_complete_and_readable(tiny):
    root, _ = tiny
    layout = VOCLayout(root)
    names = synthetic.class_names(DEFAULTS["num_classes"])
    assert layout.class_names == ("background", *names)
    assert layout.num_foreground == DEFAULTS["num_classes"]
    for split, count in SMALL_SPLITS.items():
        image_names = layout.names(split)
        assert image_names == [f"{split}_{i:06d}" for i in range(count)]
        tags = layout.tags(split)
        assert list(tags) == image_names
        for name in image_names:
            with Image.open(layout.image_path(name)) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 64)
            with Image.open(layout.label_path(name)) as image:
                assert image.format == "PNG" and image.mode == "P" and image.size == (64, 64)
            with Image.open(layout.saliency_path(name)) as image:
                assert image.mode == "L" and image.size == (64, 64)
            label = read_label_png(layout.label_path(name))
            assert set(np.unique(label)) <= set(range(DEFAULTS["num_classes"] + 1)) | {IGNORE_INDEX}
            # tags consistent with the mask both ways, and never empty
            assert tags[name] == tags_from_label(label, layout.num_foreground)
            assert tags[name], f"{name} carries no object class"
    for extra in ("classes.txt", "dataset.json", "diagnostics.json"):
        assert (root / extra).is_file()
    # splits are seeded apart: image i of one split is not image i of another
    assert (root / "JPEGImages" / "train_000000.jpg").read_bytes() != (root / "JPEGImages" / "val_000000.jpg").read_bytes()
    # nothing left behind beside the root
    assert sorted(p.name for p in root.parent.iterdir()) == ["ds"]


def test_dataset_json_records_resolved_options(tiny):
    root, _ = tiny
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["seed"] == 3
    assert meta["splits"] == SMALL_SPLITS
    assert meta["options"] == resolve_options(TINY)
    assert meta["generator"] == synthetic.GENERATOR


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes(tmp_path, tiny):
    root, _ = tiny
    again = tmp_path / "again"
    generate_dataset(again, SMALL_SPLITS, seed=3, options=TINY)
    first, second = _files(root), _files(again)
    assert first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"files differ between two runs with the same seed: {different[:5]}"


def test_output_does_not_depend_on_split_order_or_other_splits(tmp_path, tiny):
    root, _ = tiny
    other = tmp_path / "other"
    generate_dataset(other, {"val": 3, "extra": 2, "train": 4}, seed=3, options=TINY)
    for name in [f"train_{i:06d}" for i in range(4)] + [f"val_{i:06d}" for i in range(3)]:
        for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("saliency", "png")):
            assert (other / sub / f"{name}.{ext}").read_bytes() == (root / sub / f"{name}.{ext}").read_bytes()


def test_generate_sample_matches_files(tiny):
    root, _ = tiny
    sample = generate_sample("val", 7, seed=3, options=TINY)
    assert np.array_equal(sample["label"], read_label_png(root / "SegmentationClass" / "val_000007.png"))
    assert np.array_equal(sample["saliency"], read_grey(root / "saliency" / "val_000007.png"))


def test_different_seed_different_images_same_statistics(tmp_path, large):
    root, diagnostics = large
    other = tmp_path / "seed1"
    other_diagnostics = generate_dataset(other, {"train": 200}, seed=1, options=TINY)
    # different images
    same = sum((root / "JPEGImages" / f"train_{i:06d}.jpg").read_bytes()
               == (other / "JPEGImages" / f"train_{i:06d}.jpg").read_bytes() for i in range(200))
    assert same == 0
    labels_equal = sum(np.array_equal(read_label_png(root / "SegmentationClass" / f"train_{i:06d}.png"),
                                      read_label_png(other / "SegmentationClass" / f"train_{i:06d}.png"))
                       for i in range(20))
    assert labels_equal <= 2
    # same statistics
    a, b = diagnostics["splits"]["train"], other_diagnostics["splits"]["train"]
    fa = np.array(a["class_frequency"]) / a["num_images"]
    fb = np.array(b["class_frequency"]) / b["num_images"]
    assert np.abs(fa - fb).max() < 0.15, (fa, fb)
    assert abs(a["saliency_iou"]["mean"] - b["saliency_iou"]["mean"]) < 0.1
    assert abs(a["part_fraction"]["mean"] - b["part_fraction"]["mean"]) < 0.05
    assert abs(a["object_area"]["quantiles"]["q50"] - b["object_area"]["quantiles"]["q50"]) < 0.05
    assert abs(a["objects_per_image"]["mean"] - b["objects_per_image"]["mean"]) < 0.3


# --------------------------------------------------------------------------- errors and atomicity


def test_unknown_option_raises_naming_it(tmp_path):
    with pytest.raises(ValueError, match="bogus_knob"):
        generate_dataset(tmp_path / "ds", {"train": 2}, seed=0, options={"bogus_knob": 1})
    assert not (tmp_path / "ds").exists()
    with pytest.raises(ValueError, match="bogus_knob"):
        resolve_options({"image_size": 64, "bogus_knob": 1})


@pytest.mark.parametrize("bad", [{"objects_per_image": [3, 1]}, {"object_area": [0.0, 0.5]},
                                 {"num_classes": 99}, {"context_class": 7, "num_classes": 6},
                                 {"saliency_part_miss": 1.5}])
def test_invalid_option_values_raise(bad):
    with pytest.raises(ValueError):
        resolve_options(bad)


def test_existing_root_raises(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=str(root)):
        generate_dataset(root, {"train": 2}, seed=0, options=TINY)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_crash_leaves_no_partial_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    from wsss.data.sources.synthetic import writer

    original = writer.write_label_png

    def flaky(path, label, **options):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        original(path, label, **options)

    monkeypatch.setattr(writer, "write_label_png", flaky)
    with pytest.raises(OSError, match="simulated"):
        generate_dataset(tmp_path / "ds", {"train": 8}, seed=0, options=TINY)
    assert list(tmp_path.iterdir()) == [], "a crash left files behind"


# --------------------------------------------------------------------------- difficulties


def test_part_covers_a_minority_of_each_object(large):
    _, diagnostics = large
    parts = diagnostics["splits"]["train"]["part_fraction"]
    assert parts["count"] >= 200
    assert 0.6 * DEFAULTS["part_area"] <= parts["mean"] <= 1.3 * DEFAULTS["part_area"]
    assert parts["quantiles"]["q95"] < 0.5
    assert parts["quantiles"]["q05"] > 0.01


def test_part_area_knob_is_respected():
    small = [f for i in range(25) for f in generate_sample("train", i, 0, {"image_size": 64, "part_area": 0.1})["part_fractions"]]
    big = [f for i in range(25) for f in generate_sample("train", i, 0, {"image_size": 64, "part_area": 0.35})["part_fractions"]]
    assert np.mean(small) < 0.15 < 0.28 < np.mean(big)


def test_saliency_is_soft_and_imperfect(large):
    root, diagnostics = large
    layout = VOCLayout(root)
    ious, soft = [], []
    for name in layout.names("train"):
        label = read_label_png(layout.label_path(name))
        saliency = read_grey(layout.saliency_path(name))
        ious.append(_foreground_iou(label, saliency))
        soft.append(np.mean((saliency > 20) & (saliency < 235)))
    mean_iou = float(np.mean(ious))
    assert 0.4 < mean_iou < 0.95, mean_iou
    assert abs(mean_iou - diagnostics["splits"]["train"]["saliency_iou"]["mean"]) < 1e-5
    assert np.mean(soft) > 0.05, "saliency maps look binary: no soft boundaries"
    assert min(ious) < 0.5, "saliency never misses badly"


def test_saliency_knobs_change_quality():
    perfect = {"image_size": 64, "saliency_part_miss": 0.0, "saliency_distractor": 0.0,
               "saliency_object_miss": 0.0, "saliency_noise": 0.0, "saliency_blur": 0.5}
    ious = [generate_sample("train", i, 0, perfect)["saliency_iou"] for i in range(25)]
    default = [generate_sample("train", i, 0, TINY)["saliency_iou"] for i in range(25)]
    assert np.mean(ious) > 0.85
    assert np.mean(default) < np.mean(ious) - 0.05


def test_class_imbalance(large):
    root, diagnostics = large
    frequency = np.array(diagnostics["splits"]["train"]["class_frequency"])
    assert frequency.argmax() == 0
    assert frequency.max() >= 2 * frequency.min(), frequency
    assert frequency.min() > 0


def test_balanced_when_imbalance_is_one():
    options = {"image_size": 32, "class_imbalance": 1.0, "distractors": [0, 0]}
    counts = np.zeros(DEFAULTS["num_classes"])
    for i in range(150):
        counts[tags_from_label(generate_sample("train", i, 0, options)["label"], DEFAULTS["num_classes"])] += 1
    assert counts.max() < 1.7 * counts.min(), counts


def test_context_bias(large):
    _, diagnostics = large
    context = diagnostics["splits"]["train"]["context"]
    c = DEFAULTS["context_class"]
    assert context["class"] == c and context["texture"] == "water"
    rates = context["rate_on_texture_by_class"]
    assert rates[c] >= 0.6
    others = [r for k, r in enumerate(rates) if k != c and r is not None]
    assert max(others) < rates[c] - 0.25, rates
    assert 0 < context["rate_texture_without_class"] < 0.3  # the texture also appears without the class
    assert context["class_on_texture"] == round(rates[c] * context["images_with_class"])


def test_context_bias_knob():
    options = {"image_size": 32, "context_bias": 0.0, "context_texture_rate": 0.0}
    assert not any(generate_sample("train", i, 0, options)["water"] for i in range(30))
    options = {"image_size": 32, "context_bias": 1.0, "context_texture_rate": 0.0, "class_imbalance": 1.0}
    for i in range(30):
        sample = generate_sample("train", i, 0, options)
        has_context = DEFAULTS["context_class"] in tags_from_label(sample["label"], DEFAULTS["num_classes"])
        if has_context:
            assert sample["water"]


def test_clutter_and_scale(large):
    _, diagnostics = large
    train = diagnostics["splits"]["train"]
    areas = train["object_area"]["quantiles"]
    assert areas["q05"] < 0.06 and areas["q95"] > 0.25
    assert set(train["objects_per_image"]["histogram"]) == {"1", "2", "3"}
    assert train["distractors"]["mean"] > 0.5
    assert len({name.split("+")[0] for name in train["background_textures"]}) >= 6


def test_objects_touch_or_overlap_sometimes(large):
    root, _ = large
    layout = VOCLayout(root)
    touching = 0
    for name in layout.names("train"):
        label = read_label_png(layout.label_path(name)).astype(np.int32)
        right = (label[:, 1:] > 0) & (label[:, :-1] > 0) & (label[:, 1:] != label[:, :-1])
        down = (label[1:] > 0) & (label[:-1] > 0) & (label[1:] != label[:-1])
        touching += bool(right.any() or down.any())
    assert touching >= 10  # different classes side by side in at least 5% of images


def test_ignore_band_option(tmp_path):
    sample = generate_sample("train", 0, 0, {"image_size": 64, "ignore_band": 1})
    label = sample["label"]
    assert (label == IGNORE_INDEX).any()
    assert tags_from_label(label, DEFAULTS["num_classes"])


# --------------------------------------------------------------------------- diagnostics


def test_diagnostics_consistent_with_files(tiny):
    root, returned = tiny
    stored = json.loads((root / "diagnostics.json").read_text())
    assert stored == returned
    layout = VOCLayout(root)
    assert returned["class_names"] == list(layout.class_names[1:])
    c = layout.num_foreground
    for split, count in SMALL_SPLITS.items():
        d = returned["splits"][split]
        for key in ("num_images", "class_frequency", "class_frequency_by_name", "cooccurrence",
                    "objects_per_image", "object_area", "saliency_iou", "part_fraction", "context",
                    "distractors", "background_textures"):
            assert key in d, key
        assert d["num_images"] == count == len(layout.names(split))
        present = np.zeros((count, c), np.int64)
        for row, name in enumerate(layout.names(split)):
            present[row, tags_from_label(read_label_png(layout.label_path(name)), c)] = 1
        assert d["class_frequency"] == present.sum(0).tolist()
        assert d["cooccurrence"] == (present.T @ present).tolist()
        assert list(d["class_frequency_by_name"].values()) == d["class_frequency"]
        assert sum(d["objects_per_image"]["histogram"].values()) == count
        assert sum(d["object_area"]["histogram"]["counts"]) == d["object_area"]["count"]
        assert d["part_fraction"]["count"] == d["object_area"]["count"]
        assert sum(d["background_textures"].values()) == count
        q = d["saliency_iou"]["quantiles"]
        assert 0 <= q["q05"] <= q["q25"] <= q["q50"] <= q["q75"] <= q["q95"] <= 1


def test_parts_masks_cover_exactly_the_visible_objects_one_class_each(tiny):
    """parts/NAME.png: bodies and markings of the visible objects; their union is the object mask, each object
    has one class, and a marking lies on an object of the class whose marking it is."""
    from wsss.data.parts import parts_path, read_parts

    root, _ = tiny
    layout = VOCLayout(root)
    markings_seen = 0
    for name in layout.names("train"):
        instances, marking = read_parts(parts_path(root, name))
        label = read_label_png(layout.label_path(name))
        objects = (label > 0) & (label != IGNORE_INDEX)
        assert np.array_equal(instances > 0, objects), name
        for k in np.unique(instances[instances > 0]):
            assert len(np.unique(label[instances == k])) == 1, (name, k)  # one class per object
        assert not (marking & ~objects).any()
        markings_seen += int(marking.sum())
        assert (instances > 0).sum() > marking.sum()  # bodies are most of an object
    assert markings_seen > 0


# --------------------------------------------------------------------------- bodies other images can explain


def _body_colours(samples, classes_of=None):
    """{class: [mean colour of each visible body]} from samples' parts maps (markings left out)."""
    from wsss.data.parts import decode_parts

    colours = {}
    for sample in samples:
        instances, marking = decode_parts(sample["parts"])
        for k in np.unique(instances[instances > 0]):
            body = (instances == k) & ~marking
            if body.sum() < 30:
                continue
            cls = int(np.bincount(sample["label"][instances == k]).argmax()) - 1
            colours.setdefault(cls, []).append(sample["image"][body].mean(0))
    return colours


def test_bodies_wear_their_class_style_across_images_and_distractors_none():
    """body_style class: each class's bodies share a colour family over the dataset (a family is shared by two
    classes, so colour alone does not name a class); with body_style pool they do not."""
    from wsss.data.sources.synthetic.options import BODY_FAMILIES, target_body_style

    options = {"image_size": 64, "body_contrast": 0.0, "pixel_noise": 0.0}
    faithful = _body_colours([generate_sample("train", i, 0, {**options, "body_colour_spread": 10.0,
                                                               "body_shading": 0.0}) for i in range(60)])
    assert len(faithful) >= 5
    for cls, colours in faithful.items():
        family = BODY_FAMILIES[target_body_style(cls)["family"]]
        distances = np.linalg.norm(np.array(colours) - family, axis=1)
        assert np.median(distances) < 25, (cls, np.median(distances))  # lighting and jitter, nothing more
    # by default each body strays from its family (body_colour_spread, body_shading), the class's mean does not
    by_class = _body_colours([generate_sample("train", i, 0, options) for i in range(60)])
    for cls, colours in by_class.items():
        if len(colours) >= 8:
            family = BODY_FAMILIES[target_body_style(cls)["family"]]
            assert np.linalg.norm(np.mean(colours, 0) - family) < 25, cls
            assert np.median(np.linalg.norm(np.array(colours) - family, axis=1)) > 25, cls
    families = [target_body_style(cls)["family"] for cls in range(6)]
    assert sorted(families) == [0, 0, 1, 1, 2, 2]  # partly shared
    assert len({(target_body_style(c)["family"], target_body_style(c)["kind"], target_body_style(c)["period"])
                for c in range(6)}) == 6  # together each class's own
    from wsss.data.sources.synthetic import EARLIER_DESIGN

    pooled = _body_colours([generate_sample("train", i, 0, {**EARLIER_DESIGN, **options}) for i in range(60)])
    spread = [np.median(np.linalg.norm(np.array(c) - np.mean(c, 0), axis=1)) for c in pooled.values() if len(c) > 3]
    assert np.median(spread) > 30  # the pool design: a class's bodies vary widely


def test_class_textures_survive_a_horizontal_flip():
    """The training augmentation flips images: a class's body texture must look the same flipped (its spectrum's
    magnitude unchanged), or the flip would turn one class's texture into another's, as stripes at 30 degrees
    (the control) would."""
    from wsss.data.sources.synthetic.noise import Grid
    from wsss.data.sources.synthetic.options import BODY_TEXTURE_KINDS
    from wsss.data.sources.synthetic.paint import _class_texture

    grid = Grid(64)

    def spectrum_change(texture):
        spectrum = np.abs(np.fft.fft2(texture - texture.mean()))
        flipped = np.abs(np.fft.fft2(texture[:, ::-1] - texture.mean()))
        return float(np.abs(spectrum - flipped).sum() / spectrum.sum())

    for kind in BODY_TEXTURE_KINDS:
        rng = np.random.default_rng(0)
        texture = _class_texture(kind, grid, 8.0, 24.0, rng)  # its unoriented noise changes a little (0.07-0.11)
        assert spectrum_change(texture) < 0.25, kind
    angle = np.radians(30)
    control = 24 * np.sin(2 * np.pi * (grid.xx * np.cos(angle) + grid.yy * np.sin(angle)) / 8.0)
    assert spectrum_change(control) > 1.0


def test_pretraining_classes_are_other_classes_with_the_same_kinds_of_cue():
    from wsss.data.sources.synthetic.options import class_table, pretrain_body_style, target_body_style

    target = class_table(resolve_options({}))
    pretrain = class_table(resolve_options({"class_set": "pretrain", "num_classes": 12}))
    target_markings = {(tuple(entry["colour"]), entry["pattern"]) for entry in target}
    assert not target_markings & {(tuple(entry["colour"]), entry["pattern"]) for entry in pretrain}
    assert len({(tuple(entry["colour"]), entry["pattern"]) for entry in pretrain}) == 12
    target_bodies = {tuple(sorted(target_body_style(c).items())) for c in range(12)}
    assert not target_bodies & {tuple(sorted(pretrain_body_style(c).items())) for c in range(12)}
    assert {target_body_style(c)["kind"] for c in range(6)} == {pretrain_body_style(c)["kind"] for c in range(12)}


def test_hidden_markings_option_leaves_that_share_of_objects_without_a_marking():
    from wsss.data.parts import decode_parts

    def share_without(options):
        hidden = total = 0
        for i in range(40):
            instances, marking = decode_parts(generate_sample("train", i, 0, {"image_size": 64, **options})["parts"])
            for k in np.unique(instances[instances > 0]):
                total += 1
                hidden += not (marking & (instances == k)).any()
        return hidden / total

    assert share_without({}) < 0.05  # (a marking can be hidden by a later object only in part)
    assert 0.35 < share_without({"hidden_markings": 0.5}) < 0.65


def test_markings_at_the_edge_sit_farther_from_the_object_centre():
    from wsss.data.parts import decode_parts

    def mean_offset(position):
        offsets = []
        for i in range(30):
            instances, marking = decode_parts(generate_sample(
                "train", i, 0, {"image_size": 64, "marking_position": position, "overlap": 0.0})["parts"])
            for k in np.unique(instances[instances > 0]):
                obj, mark = instances == k, (instances == k) & marking
                if mark.sum() < 4 or obj.sum() < 200:
                    continue
                radius = np.sqrt(obj.sum() / np.pi)
                centre, spot = np.argwhere(obj).mean(0), np.argwhere(mark).mean(0)
                offsets.append(np.linalg.norm(spot - centre) / radius)
        return np.mean(offsets)

    assert mean_offset("edge") > mean_offset("anywhere") + 0.15
