"""The bank's measurements in the classifier's history: purity of its entries (against the augmented training
images' true masks) and their nearest-neighbour accuracy; measurements only, training unchanged."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from PIL import Image

from wsss.classifier.rca_schedule import rca_step
from wsss.data.datasets import ClassificationDataset, IMAGENET_MEAN, IMAGENET_STD, split_has_masks
from wsss.data.voc import VOCLayout, write_label_png
from wsss.models.bank_measures import bank_summary, cell_labels, nearest_neighbour_hits, region_purity
from wsss.models.classifier import CAMClassifier
from wsss.models.rca import RegionMemoryBank

from conftest import Killed, kill_after_first_checkpoint, tiny_settings

RCA_SETTINGS = {"classifier": {"head_convs": 1, "head_channels": 16, "scale_range": [0.7, 1.3],
                               "rca": {"contrast": True, "aggregation": True, "embed_dim": 16, "bank_size": 8,
                                       "clusters": 2, "bank_confidence": 0.0, "contrast_start_epoch": 1}}}


def test_a_cell_takes_the_most_frequent_label_of_its_pixels():
    mask = torch.zeros(1, 4, 6, dtype=torch.uint8)
    mask[0, :2, :2] = 3  # the whole first cell
    mask[0, 0, 2] = 3  # one pixel of four in the second cell
    mask[0, 2:, 4:] = 255
    mask[0, 3, 5] = 1
    assert cell_labels(mask, (2, 3)).tolist() == [[[3, 0, 0], [0, 0, 255]]]


def test_region_purity_is_the_share_of_the_region_on_cells_of_its_class():
    cams = torch.zeros(1, 2, 2, 4)
    cams[0, 0, 0, :] = 5.0  # class 0's region: the top row and the last cell of the bottom row
    cams[0, 0, 1, 3] = 5.0
    cams[0, 1, 1, :3] = 5.0  # class 1's region: the first three cells of the bottom row
    cells = torch.tensor([[[1, 1, 1, 0], [2, 0, 0, 255]]])
    torch.testing.assert_close(region_purity(cams, cells), torch.tensor([[0.6, 1 / 3]]))


def test_nearest_neighbour_hits_leave_each_entry_out():
    entries = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.3]])
    classes = torch.tensor([0, 0, 1, 1, 1])  # the last is closest to class 0's entries
    assert nearest_neighbour_hits(entries, classes).tolist() == [True, True, True, True, False]
    assert nearest_neighbour_hits(entries, classes, chunk=2).tolist() == [True, True, True, True, False]


def test_purities_follow_their_entries_into_the_bank_and_are_averaged_over_filled_slots():
    bank = RegionMemoryBank(3, 2, 2)
    entries = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    bank.update(entries, torch.tensor([0, 0, 1]), torch.tensor([0.2, 0.4, 0.9]))
    bank.update(entries[:1], torch.tensor([0]), torch.tensor([1.0]))  # replaces class 0's first slot
    assert bank.purity[0].tolist() == pytest.approx([1.0, 0.4])
    summary = bank_summary(bank, with_purity=True)
    assert summary["entries_per_class"] == [2, 1, 0]
    assert summary["purity"] == pytest.approx((1.0 + 0.4 + 0.9) / 3)
    assert summary["purity_per_class"] == pytest.approx([0.7, 0.9, None])
    assert summary["nn_accuracy_per_class"] == [1.0, 0.0, None]
    assert "purity" not in bank_summary(bank, with_purity=False)
    assert "bank.purity" not in CAMClassifier(3, {"width": 0.125}, rca=RCA).state_dict()  # not saved with the model


def test_a_momentum_bank_blends_the_purity_as_it_blends_the_entry():
    bank = RegionMemoryBank(1, 1, 2, update="momentum", momentum=0.75)
    bank.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), torch.tensor([0.0]))
    bank.update(torch.tensor([[0.0, 1.0]]), torch.tensor([0]), torch.tensor([1.0]))
    assert float(bank.purity[0, 0]) == pytest.approx(0.25)


def label_image_layout(root, names=("a", "b", "c")):
    """A hand-made layout whose images are their masks in grey (label 1 at 100, 2 at 200): an augmented image
    then tells where its mask's labels must be."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        label = np.zeros((40, 56), np.uint8)
        top, left = rng.integers(0, 20), rng.integers(0, 28)
        label[top:top + 20, left:left + 28] = 1
        label[:, :8] = 2
        Image.fromarray(np.repeat((label * 100)[..., None], 3, axis=2)).save(root / "JPEGImages" / f"{name}.jpg",
                                                                             quality=100)
        write_label_png(root / "SegmentationClass" / f"{name}.png", label)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(names) + "\n")
    (root / "ImageSets/Segmentation/train_cls.txt").write_text("\n".join(f"{n} 0 1" for n in names) + "\n")
    return VOCLayout(root)


def test_the_masks_are_augmented_with_their_images_and_the_images_do_not_change(tmp_path):
    layout = label_image_layout(tmp_path)
    plain = ClassificationDataset(layout, "train", 48, (0.6, 1.4))
    with_masks = ClassificationDataset(layout, "train", 48, (0.6, 1.4), with_masks=True)
    assert split_has_masks(layout, "train")
    agreements = []
    for item in [(0, 11), (1, 12), (2, 13), (0, 14), (1, 15)]:
        image, tags, seed = plain[item]
        image_again, tags_again, seed_again, mask = with_masks[item]
        assert torch.equal(image, image_again) and torch.equal(tags, tags_again) and seed == seed_again
        grey = (image * IMAGENET_STD + IMAGENET_MEAN)[0] * 255
        inside = mask != 255  # the crop's padding is ignored
        assert inside.any()
        candidates = [mask, mask.flip(-1), *(mask.roll(shift, dim) for shift in (-2, 2) for dim in (0, 1))]
        agreements.append([float(((grey - candidate.float() * 100).abs() < 50)[inside].float().mean())
                           for candidate in candidates])
    # the edges differ (the image is resized bilinearly, the mask to the nearest pixel): the mask agrees with its
    # image, and better than it would flipped or two pixels off
    right, *others = np.mean(agreements, axis=0)
    assert min(row[0] for row in agreements) > 0.9 and right > max(others)


def train_rca(dataset, out, **options):
    from wsss.classifier.train import train_classifier

    result = train_classifier(dataset, "train", tiny_settings(**RCA_SETTINGS), out / "m.pt", out / "h.json",
                              out / "ckpt", **options)
    return torch.load(out / "m.pt", weights_only=False)["model"], result["history"]


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


@pytest.fixture(scope="module")
def measured_run(tiny_dataset, tmp_path_factory):
    """An RCA run measuring its bank's purity, on a copy of the dataset without parts/ (training never reads it)."""
    dataset = tmp_path_factory.mktemp("no_parts") / "tiny"
    shutil.copytree(tiny_dataset, dataset, ignore=shutil.ignore_patterns("parts"))
    assert not (dataset / "parts").exists()
    return dataset, *train_rca(dataset, tmp_path_factory.mktemp("measured"), bank_purity=True)


def test_the_purity_measurement_leaves_the_weights_and_the_bank_bit_identical(measured_run, tiny_dataset, tmp_path):
    _, measured_state, measured_history = measured_run
    state, history = train_rca(tiny_dataset, tmp_path, bank_purity=False)
    assert measured_state.keys() == state.keys()
    for key in state:
        assert torch.equal(measured_state[key], state[key]), key
    assert measured_state["bank.filled"].any()
    assert [r["loss"] for r in measured_history] == [r["loss"] for r in history]
    assert all("purity" not in record["bank"] for record in history)
    for record, plain in zip(measured_history, history):
        assert {key: value for key, value in record["bank"].items() if not key.startswith("purity")} == plain["bank"]


def test_the_history_records_the_banks_purity_and_neighbour_accuracy_per_epoch(measured_run):
    _, state, history = measured_run
    assert [record["epoch"] for record in history] == [0, 1]
    for record in history:
        bank = record["bank"]
        assert 0.0 <= bank["purity"] <= 1.0 and 0.0 <= bank["nn_accuracy"] <= 1.0
        filled = [count > 0 for count in bank["entries_per_class"]]
        assert [value is not None for value in bank["purity_per_class"]] == filled
        assert bank["entries"] == sum(bank["entries_per_class"])
    assert history[-1]["bank"]["entries_per_class"] == state["bank.filled"].sum(1).tolist()
    assert history[-1]["bank"]["purity"] > 0.0


def test_a_resumed_run_records_the_same_history(measured_run, tmp_path, monkeypatch):
    dataset, state, history = measured_run
    with monkeypatch.context() as patch:
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_rca(dataset, tmp_path, bank_purity=True)
    resumed_state, resumed = train_rca(dataset, tmp_path, bank_purity=True)
    assert without_seconds(resumed) == without_seconds(history)
    assert torch.equal(resumed_state["bank.entries"], state["bank.entries"])


def test_without_masks_nothing_is_measured_unless_asked(tiny_dataset, tmp_path):
    dataset = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, dataset, ignore=shutil.ignore_patterns("SegmentationClass", "parts"))
    layout = VOCLayout(dataset)
    assert not split_has_masks(layout, "train")
    with pytest.raises(ValueError, match="has none"):
        train_rca(layout, tmp_path / "asked", bank_purity=True)
    _, history = train_rca(layout, tmp_path / "auto")
    assert all("purity" not in record["bank"] and "nn_accuracy" in record["bank"] for record in history)


RCA = {"contrast": True, "aggregation": False, "embed_dim": 8, "bank_size": 4, "bank_update": "fifo",
       "bank_momentum": 0.99, "bank_confidence": 0.0, "contrast_start_epoch": 0, "temperature": 0.07,
       "mixup_beta": 8.0, "mixup_partner": "bank"}


def one_step_bank(images, targets, seeds, masks):
    """The bank (entries, purities) after one rca_step of a fixed model on a batch."""
    torch.manual_seed(0)
    model = CAMClassifier(3, {"width": 0.125}, rca=RCA).train()
    model.projection.layers[1].eval()  # BatchNorm with fixed statistics: no per-rank batch dependence
    rca_step(model, model(images), targets, seeds, RCA, epoch=0, masks=masks)
    return model.bank.entries.clone(), model.bank.purity.clone()


def step_batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=generator)
    masks = torch.randint(0, 4, (4, 32, 32), generator=generator).to(torch.uint8)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    return images, targets, torch.tensor([11, 12, 13, 14]), masks


def rank_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    share = slice(rank, None, world)  # as in training: every world-th image of the global batch
    torch.save(one_step_bank(*(tensor[share] for tensor in step_batch())), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_on_two_processes_the_purities_follow_the_gathered_entries(tmp_path):
    mp.spawn(rank_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single_entries, single_purity = one_step_bank(*step_batch())
    assert not torch.isnan(single_purity).all()
    for rank in (0, 1):
        entries, purity = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        torch.testing.assert_close(entries, single_entries)
        torch.testing.assert_close(purity, single_purity, equal_nan=True)
