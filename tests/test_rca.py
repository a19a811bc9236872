import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.models.classifier import CAMClassifier
from wsss.models.rca import (RegionMemoryBank, SemanticAggregation, bank_partners, batch_partner_draw,
                             contrast_loss_per_query, kmeans, per_image_contrast_weight, region_embeddings,
                             region_masks, semantic_contrast_loss)
from wsss.classifier.rca_schedule import batch_partner_contrast

from conftest import Killed, kill_after_first_checkpoint, tiny_settings

RCA = {"contrast": True, "aggregation": True, "embed_dim": 8, "bank_size": 6, "bank_update": "fifo",
       "bank_momentum": 0.99, "clusters": 2, "aggregation_variant": "paper", "aggregation_temperature": 0.1}


def filled_bank(num_classes=3, size=4, dim=5, seed=0):
    bank = RegionMemoryBank(num_classes, size, dim)
    generator = torch.Generator().manual_seed(seed)
    for cls in range(num_classes):
        for _ in range(size - cls):  # classes filled to different depths
            bank.update(torch.randn(1, dim, generator=generator), torch.tensor([cls]))
    return bank


def direct_infonce(query, target, entries, classes, temperature):
    """The per-positive InfoNCE written as loops, independently of the vectorised code."""
    total, count = 0.0, 0
    for p in range(len(entries)):
        if classes[p] != target:
            continue
        s_p = float(query @ entries[p]) / temperature
        negatives = sum(math.exp(float(query @ entries[n]) / temperature)
                        for n in range(len(entries)) if classes[n] != target)
        total += -(s_p - math.log(math.exp(s_p) + negatives))
        count += 1
    return total / count if count else 0.0


def test_contrast_loss_matches_a_direct_loop():
    bank = filled_bank()
    entries, classes = bank.flat()
    queries = F.normalize(torch.randn(5, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    targets = torch.tensor([0, 1, 2, 1, 0])
    got = contrast_loss_per_query(queries, targets, entries, classes, 0.07)
    expected = [direct_infonce(q, int(t), entries, classes, 0.07) for q, t in zip(queries, targets)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_mixup_contrast_is_the_lambda_weighted_pair_loss_averaged_per_image():
    bank = filled_bank()
    entries, classes = bank.flat()
    regions = F.normalize(torch.randn(3, 5, generator=torch.Generator().manual_seed(2)), dim=1)
    region_classes, region_images = torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1])
    seeds = [(5, 0), (5, 2), (6, 1)]
    loss = semantic_contrast_loss(regions, region_classes, region_images, bank_partners(bank, seeds, 8.0), bank, 0.07)
    lam, partners = [], []
    for seed in seeds:  # replay the same draws
        rng = np.random.default_rng(seed)
        lam.append(rng.beta(8.0, 8.0))
        partners.append(rng.integers(len(entries)))
    per_region = []
    for r, c, l, p in zip(regions, region_classes, lam, partners):
        q = F.normalize(float(l) * r + (1 - float(l)) * entries[p], dim=0)
        per_region.append(l * direct_infonce(q, int(c), entries, classes, 0.07)
                          + (1 - l) * direct_infonce(q, int(classes[p]), entries, classes, 0.07))
    expected = ((per_region[0] + per_region[1]) / 2 + per_region[2]) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # the global image count (other GPUs' images) divides the summed per-image losses
    scaled = semantic_contrast_loss(regions, region_classes, region_images, bank_partners(bank, seeds, 8.0), bank, 0.07,
                                    num_images=4)
    assert float(scaled) == pytest.approx(expected * 2 / 4, rel=1e-5)


PARTNER_RCA = {"mixup_beta": 8.0, "temperature": 0.07}


def public_code_contrast(regions, targets, images, draws, bank, temperature, detach_partner=False):
    """The public code's contrast of the images one GPU holds (`images`), written as its loops: per image the mean
    over its tags of lam l1 + (1 - lam) l2 (logits shifted by their detached maximum, the log's argument clamped
    at 1e-4), summed over the images. `draws`: {(image, tag): (lam, partner image, partner class)}."""
    entries, classes = bank.flat()
    total = 0.0
    for image in images:
        tags = targets[image].nonzero().flatten().tolist()
        image_loss = 0.0
        for tag in tags:
            lam, partner_image, partner_class = draws[image, tag]
            partner = regions[partner_image, partner_class]
            partner = partner.detach() if detach_partner else partner
            query = F.normalize(lam * regions[image, tag] + (1 - lam) * partner, dim=0)
            logits = query @ entries.T / temperature
            shift = logits.max().detach()
            for target, weight in ((tag, lam), (partner_class, 1 - lam)):
                positive = classes == target
                negatives = ((logits - shift).exp() * ~positive).sum()
                logit_pos = logits[positive] - shift
                image_loss = image_loss + weight * (-(logit_pos - torch.log(
                    (negatives + logit_pos.exp()).clamp(min=1e-4)))).mean()
        total = total + image_loss / len(tags)
    return total


def partner_batch(size=8, classes=3, dim=5):
    generator = torch.Generator().manual_seed(4)
    regions = F.normalize(torch.randn(size, classes, dim, generator=generator), dim=-1).requires_grad_()
    targets = (torch.rand(size, classes, generator=generator) > 0.5).float()
    targets[targets.sum(1) == 0, 0] = 1.0
    return regions, targets, torch.arange(100, 100 + size)


def replayed_draws(targets, seeds, epoch):
    image_tags = [row.nonzero().flatten().tolist() for row in targets]
    return {(i, c): batch_partner_draw((int(seeds[i]), c, epoch), 8.0, image_tags)
            for i, tags in enumerate(image_tags) for c in tags}


def public_code_loss(regions, targets, draws, bank, gpus, detach_partner=False):
    """0.01 x the mean over GPUs of each GPU's summed contrast (DataParallel gives each GPU a contiguous chunk)."""
    chunks = torch.arange(len(targets)).chunk(gpus)
    sums = [public_code_contrast(regions, targets, chunk.tolist(), draws, bank, 0.07, detach_partner)
            for chunk in chunks]
    return 0.01 * sum(sums) / gpus


@pytest.mark.parametrize("gpus", [1, 4])
def test_the_per_image_weight_gives_the_public_codes_loss_and_gradient(gpus):
    """The public code: 0.01 x the mean over GPUs of each GPU's summed contrast, at batch 8. This code: the mean over
    images, weighted per_image_contrast_weight(0.01, 8, gpus) (0.08 on one GPU, 0.02 on four): the same loss and the
    same gradient, into the regions and into their batch partners."""
    regions, targets, seeds = partner_batch()
    bank = filled_bank()
    ours = per_image_contrast_weight(0.01, len(targets), gpus) * batch_partner_contrast(
        bank, regions, targets, seeds, PARTNER_RCA, epoch=3)
    ours_gradient, = torch.autograd.grad(ours, regions)
    draws = replayed_draws(targets, seeds, 3)
    public = public_code_loss(regions, targets, draws, bank, gpus)
    public_gradient, = torch.autograd.grad(public, regions)
    assert float(ours.detach()) == pytest.approx(float(public.detach()), rel=1e-5)
    torch.testing.assert_close(ours_gradient, public_gradient, rtol=1e-4, atol=1e-8)
    assert per_image_contrast_weight(0.01, 8, 1) == pytest.approx(0.08)
    assert per_image_contrast_weight(0.01, 8, 4) == pytest.approx(0.02)


def test_a_batch_partner_keeps_the_gradient_into_both_regions():
    regions, targets, seeds = partner_batch()
    bank = filled_bank()
    draws = replayed_draws(targets, seeds, 0)
    loss = batch_partner_contrast(bank, regions, targets, seeds, PARTNER_RCA, epoch=0)
    gradient, = torch.autograd.grad(loss, regions)
    assert (gradient[targets.bool()].norm(dim=-1) > 0).all()  # every tagged region learns ...
    assert not gradient[~targets.bool()].any()  # ... untagged ones take no part
    # what the partners pass on: without it (partners as constants, as bank entries are) the gradient differs at
    # the regions that are partners of another region
    detached, = torch.autograd.grad(public_code_loss(regions, targets, draws, bank, 1, detach_partner=True), regions)
    kept, = torch.autograd.grad(public_code_loss(regions, targets, draws, bank, 1), regions)
    torch.testing.assert_close(gradient * 0.08, kept, rtol=1e-4, atol=1e-8)
    partner_of_another = {(p, c) for (image, tag), (_, p, c) in draws.items() if (p, c) != (image, tag)}
    changed = {(p, c) for p, c in partner_of_another if not torch.allclose(kept[p, c], detached[p, c])}
    assert changed == partner_of_another and changed


def test_batch_partner_draws_depend_on_the_seed_and_the_batch_tags_only():
    image_tags = [[0], [1, 2], [], [2]]
    draws = [batch_partner_draw((7, 1, 2), 8.0, image_tags) for _ in range(2)]
    assert draws[0] == draws[1]
    many = [batch_partner_draw((seed, 0, 0), 8.0, image_tags) for seed in range(200)]
    assert {draw[1] for draw in many} == {0, 1, 3}  # every tagged image, never the untagged one
    assert all(cls in image_tags[image] for _, image, cls in many)
    assert {draw[2] for draw in many if draw[1] == 1} == {1, 2}


def test_fifo_bank_replaces_the_slot_at_the_pointer_only():
    bank = RegionMemoryBank(2, 3, 4)
    vectors = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    bank.update(vectors[:4], torch.tensor([0, 0, 0, 0]))
    # ring of 3: the 4th entry overwrote slot 0
    torch.testing.assert_close(bank.entries[0], torch.stack([vectors[3], vectors[1], vectors[2]]))
    assert bank.pointer.tolist() == [1, 0]
    assert bank.filled.tolist() == [[True, True, True], [False, False, False]]
    assert torch.all(bank.entries[1] == 0)  # the other class is untouched
    before = bank.entries.clone()
    bank.update(vectors[4:5], torch.tensor([1]))
    torch.testing.assert_close(bank.entries[1, 0], vectors[4])
    changed = (bank.entries != before).any(-1)
    assert changed.tolist() == [[False, False, False], [True, False, False]]


def test_momentum_bank_blends_filled_slots_and_fills_empty_ones():
    bank = RegionMemoryBank(1, 2, 3, update="momentum", momentum=0.9)
    a, b, c = torch.eye(3)
    bank.update(torch.stack([a, b]), torch.tensor([0, 0]))
    torch.testing.assert_close(bank.entries[0], torch.stack([a, b]))  # empty slots take e as it is
    bank.update(c[None], torch.tensor([0]))
    torch.testing.assert_close(bank.entries[0, 0], F.normalize(0.9 * a + 0.1 * c, dim=0))
    torch.testing.assert_close(bank.entries[0, 1], b)
    with pytest.raises(ValueError, match="fifo"):
        RegionMemoryBank(1, 2, 3, update="lifo")


def test_region_masks_are_per_class_and_do_not_compound():
    torch.manual_seed(0)
    features, cams = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)
    masks = region_masks(cams)
    probabilities = cams.softmax(1)
    for c in range(3):
        expected = (probabilities[:, c] > probabilities[:, c].mean(dim=(1, 2), keepdim=True)).float()
        torch.testing.assert_close(masks[:, c], expected)
    embeddings = region_embeddings(features, cams)
    for b in range(2):
        for c in range(3):
            mask = masks[b, c].bool()
            expected = F.normalize(features[b][:, mask].mean(1), dim=0)
            torch.testing.assert_close(embeddings[b, c], expected)


def test_aggregation_attention_rows_sum_to_one_and_shapes_hold():
    aggregation = SemanticAggregation(feature_dim=6, embed_dim=4, num_centroids=5)
    x, z = torch.randn(2, 6, 3, 3), torch.randn(2, 4, 3, 3)
    assert aggregation(x, z).shape == (2, 6, 3, 3)  # before k-means: no centroids, still runs
    aggregation.set_centroids(F.normalize(torch.randn(5, 4), dim=1))
    attention = aggregation.attention(z)
    assert attention.shape == (2, 9, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 9))
    assert aggregation(x, z).shape == (2, 6, 3, 3)
    public = SemanticAggregation(6, 4, 5, variant="public")
    public.set_centroids(F.normalize(torch.randn(5, 4), dim=1))
    assert not torch.allclose(public.attention(z).sum(-1), torch.ones(2, 9))  # no softmax there
    assert public(x, z).shape == (2, 6, 3, 3)


def test_the_aggregate_enters_the_fuse_at_the_scale_of_x():
    """Unit-vector centroids make F' about 1/sqrt(D) per channel; the projection must bring it to x's
    scale, or the fuse starts (and, measured, stays) dominated by x and the refined head ignores F'."""
    torch.manual_seed(0)
    embed_dim, width = 64, 32
    aggregation = SemanticAggregation(feature_dim=width, embed_dim=embed_dim, num_centroids=12)
    aggregation.set_centroids(F.normalize(torch.randn(12, embed_dim), dim=1))
    x = torch.randn(8, width, 6, 6).relu() / 0.58  # post-ReLU features of about unit RMS
    z = torch.randn(8, embed_dim, 6, 6)
    mixed = (aggregation.attention(z) @ aggregation.centroids).transpose(1, 2).reshape(8, embed_dim, 6, 6)
    assert mixed.pow(2).mean().sqrt() < 0.3  # the raw aggregate is small ...
    projected = aggregation.project(mixed)
    ratio = projected.pow(2).mean().sqrt() / x.pow(2).mean().sqrt()
    assert 0.5 < ratio < 2.0  # ... its projection is not


def test_seeded_kmeans_is_reproducible_and_finds_separated_groups():
    points = torch.cat([torch.tensor([[1.0, 0.0]]) + 0.01 * torch.randn(20, 2),
                        torch.tensor([[0.0, 1.0]]) + 0.01 * torch.randn(20, 2)])
    first = kmeans(points, 2, 10, torch.Generator().manual_seed(3))
    again = kmeans(points, 2, 10, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)
    assert sorted(first.argmax(1).tolist()) == [0, 1]
    assert kmeans(points[:1], 3, 5, torch.Generator().manual_seed(0)).shape == (3, 2)


def rca_model():
    torch.manual_seed(0)
    model = CAMClassifier(3, {"width": 0.125}, rca=RCA)
    model.bank.update(F.normalize(torch.randn(6, 8), dim=1), torch.tensor([0, 0, 1, 1, 2, 2]))
    return model


def grads_of(model, loss):
    model.zero_grad()
    loss.backward()
    return {name.split(".")[0] for name, p in model.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradients_reach_only_the_intended_modules():
    model = rca_model()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = model(images)
    regions = region_embeddings(out["embeddings"], out["coarse_cams"])
    images_idx, classes = targets.nonzero(as_tuple=True)
    partners = bank_partners(model.bank, [(0, c) for c in classes.tolist()], 8.0)
    contrast = semantic_contrast_loss(regions[images_idx, classes], classes, images_idx, partners, model.bank, 0.07)
    # the contrast shapes the embedding space (projection and backbone) but not the classifiers
    assert grads_of(model, contrast) == {"backbone", "projection"}
    # before the first k-means the refined branch ignores the (empty) aggregation
    out = model(images)
    assert "projection" not in grads_of(model, F.multilabel_soft_margin_loss(out["logits"], targets))
    model.aggregation.set_centroids(F.normalize(torch.randn(6, 8), dim=1))
    out = model(images)
    refined = grads_of(model, F.multilabel_soft_margin_loss(out["logits"], targets))
    assert {"backbone", "projection", "aggregation", "refined_classifier"} <= refined
    assert "classifier" not in refined  # the coarse head learns from its own loss only
    out = model(images)
    assert grads_of(model, F.multilabel_soft_margin_loss(out["coarse_logits"], targets)) == {"backbone", "classifier"}
    assert not any(p.requires_grad for p in model.bank.buffers())


def test_the_same_seed_gives_the_same_bank_and_loss(tiny_dataset, tmp_path):
    from wsss.classifier.train import train_classifier

    rca = {"classifier": {"head_convs": 1, "head_channels": 16,
                          "rca": {"contrast": True, "aggregation": True, "embed_dim": 16, "bank_size": 8,
                                  "clusters": 2, "bank_confidence": 0.0, "contrast_start_epoch": 1}}}
    runs = []
    for run in range(2):
        out = tmp_path / str(run)
        result = train_classifier(tiny_dataset, "train", tiny_settings(**rca), out / "m.pt", out / "h.json",
                                  out / "ckpt")
        runs.append((torch.load(out / "m.pt", weights_only=False)["model"], result["history"]))
    (state_a, history_a), (state_b, history_b) = runs
    assert state_a["bank.filled"].any()
    assert state_a["aggregation.ready"]  # k-means ran at the start of epoch 1
    assert history_a[1]["contrast_loss"] > 0
    for key in ("bank.entries", "bank.pointer", "aggregation.centroids"):
        assert torch.equal(state_a[key], state_b[key]), key
    assert [h["loss"] for h in history_a] == [h["loss"] for h in history_b]


def test_accumulation_max_merges_confident_tags_only(tiny_dataset):
    from wsss.classifier.oaa import accumulate_cams
    from wsss.data.datasets import ClassificationDataset
    from wsss.data.voc import VOCLayout

    dataset = ClassificationDataset(VOCLayout(tiny_dataset), "train", 64)
    model = CAMClassifier(dataset.num_classes, {"width": 0.125}).eval()
    accumulated = {}
    accumulate_cams(model, dataset, accumulated, threshold=0.0, batch_size=8, device=torch.device("cpu"))
    name = dataset.names[0]
    assert set(accumulated) == set(dataset.names)
    assert accumulated[name].shape == (len(dataset.tags[name]), 8, 8)
    first = {key: value.copy() for key, value in accumulated.items()}
    assert all(value.max() <= 1.0 + 1e-6 for value in first.values())
    with torch.no_grad():  # a changed model: the merge keeps the element-wise maximum
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    accumulate_cams(model, dataset, accumulated, threshold=0.0, batch_size=8, device=torch.device("cpu"))
    assert all(np.all(accumulated[key] >= first[key]) for key in first)
    assert any(np.any(accumulated[key] > first[key]) for key in first)
    untouched = {}
    accumulate_cams(model, dataset, untouched, threshold=1.0, batch_size=8, device=torch.device("cpu"))
    assert all(not value.any() for value in untouched.values())  # no score reaches sigmoid >= 1


def test_accumulated_protocol_trains_resumably_and_gives_image_size_cams(tiny_dataset, tmp_path, monkeypatch):
    from wsss.cams.extract import extract_accumulated_cams
    from wsss.cams.store import cam_names, read_cams
    from wsss.classifier.train import train_classifier
    from wsss.data.voc import VOCLayout

    settings = tiny_settings(classifier={"accumulate_cams": True, "accumulate_threshold": 0.0},
                             cam={"protocol": "accumulated"})
    train_classifier(tiny_dataset, "train", settings, tmp_path / "m.pt", tmp_path / "h.json", tmp_path / "ckpt",
                     tmp_path / "accumulated.h5", "val", tmp_path / "accumulated_val.h5")
    assert not (tmp_path / "ckpt").exists()  # a finished run's checkpoints are removed
    with monkeypatch.context() as patch:  # killed after the first epoch, then resumed
        kill_after_first_checkpoint(patch)
        with pytest.raises(Killed):
            train_classifier(tiny_dataset, "train", settings, tmp_path / "r.pt", tmp_path / "r.json", tmp_path / "c3",
                             tmp_path / "resumed.h5", "val", tmp_path / "resumed_val.h5")
    # the accumulated maps, the val split's too, are checkpointed with the model
    assert (tmp_path / "c3" / "accumulated.h5").exists() and (tmp_path / "c3" / "accumulated_val.h5").exists()
    train_classifier(tiny_dataset, "train", settings, tmp_path / "r.pt", tmp_path / "r.json", tmp_path / "c3",
                     tmp_path / "resumed.h5", "val", tmp_path / "resumed_val.h5")
    for first, resumed in (("accumulated.h5", "resumed.h5"), ("accumulated_val.h5", "resumed_val.h5")):
        for key in cam_names(tmp_path / first):
            np.testing.assert_array_equal(read_cams(tmp_path / resumed, key)[0], read_cams(tmp_path / first, key)[0])
    val_tags = VOCLayout(tiny_dataset).tags("val")
    assert sorted(cam_names(tmp_path / "accumulated_val.h5")) == sorted(val_tags)  # every val image, no train image
    assert all(read_cams(tmp_path / "accumulated_val.h5", name)[1] == tags for name, tags in val_tags.items())
    extract_accumulated_cams(tmp_path / "accumulated.h5", tiny_dataset, "train", tmp_path / "shard.h5", 0, 1)
    layout = VOCLayout(tiny_dataset)
    name = layout.names("train")[0]
    cams, tags = read_cams(tmp_path / "shard.h5", name)
    assert tags == layout.tags("train")[name] and cams.shape == (len(tags), 64, 64)
    assert cams.max() == pytest.approx(1.0, abs=1e-2)
    with pytest.raises(ValueError, match="accumulated"):
        train_classifier(tiny_dataset, "train", settings, tmp_path / "m2.pt", tmp_path / "h2.json", tmp_path / "c2")


def test_accumulated_protocol_needs_accumulation_in_training():
    from wsss.core.config import ConfigError

    with pytest.raises(ConfigError, match="accumulate_cams"):
        tiny_settings(cam={"protocol": "accumulated"})


def test_the_refined_head_takes_its_own_conv_stack():
    torch.manual_seed(0)
    model = CAMClassifier(3, {"width": 0.125}, head_convs=1, head_channels=16, rca={**RCA, "refined_head_convs": 2})
    convs = [m for m in model.refined_head if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(64, 16, (3, 3)), (16, 16, (3, 3))]
    assert model.refined_classifier.in_channels == 16
    model.aggregation.set_centroids(F.normalize(torch.randn(6, 8), dim=1))
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = model(images)
    assert out["cams"].shape == out["coarse_cams"].shape == (2, 3, 4, 4)
    refined = grads_of(model, F.multilabel_soft_margin_loss(out["logits"], targets))
    assert {"refined_head", "refined_classifier", "aggregation"} <= refined and "head" not in refined
    # 0 convs (the paper's 1x1 classifier) adds no parameters: older checkpoints keep loading
    plain = CAMClassifier(3, {"width": 0.125}, rca=RCA)
    assert not any(key.startswith("refined_head") for key in plain.state_dict())


def test_the_aggregation_waits_until_every_class_has_regions_for_its_kmeans():
    from wsss.classifier.rca_schedule import aggregation_ready, regions_needed

    tags = {"a": [0, 2], "b": [0], "c": [0, 1], "d": [1]}  # class 2: one tagged image
    needed = regions_needed(tags, 3, {"clusters": 2, "bank_size": 6})
    assert needed == {0: 2, 1: 2, 2: 1}
    model = CAMClassifier(3, {"width": 0.125}, rca=RCA)
    model.bank.update(F.normalize(torch.randn(3, 8), dim=1), torch.tensor([0, 0, 1]))
    assert not aggregation_ready(model, needed)  # class 1 has one region of two, class 2 none
    model.bank.update(F.normalize(torch.randn(1, 8), dim=1), torch.tensor([1]))
    assert not aggregation_ready(model, needed)
    model.bank.update(F.normalize(torch.randn(1, 8), dim=1), torch.tensor([2]))
    assert aggregation_ready(model, needed)


def test_training_never_aggregates_an_empty_bank(tiny_dataset, tmp_path):
    from wsss.classifier.train import train_classifier

    rca = {"classifier": {"epochs": 3, "head_convs": 1, "head_channels": 16,
                          "rca": {"aggregation": True, "embed_dim": 16, "bank_size": 8, "clusters": 2,
                                  "bank_confidence": 1.0}}}  # sigmoid never exceeds 1: no region enters
    result = train_classifier(tiny_dataset, "train", tiny_settings(**rca), tmp_path / "m.pt", tmp_path / "h.json",
                              tmp_path / "ckpt")
    assert [record["aggregation"] for record in result["history"]] == [False, False, False]
    assert not bool(result["model"].aggregation.ready)
    assert not result["model"].bank.filled.any()


def grads_after_one_step(rca_overrides: dict, epoch: int, aggregation_ready: bool):
    """One single-process training step; the model, its settings and the names of the parameters left
    without a gradient."""
    from wsss.classifier.rca_schedule import refresh_centroids
    from wsss.classifier.train import train_one_epoch
    from wsss.core.guards import FiniteGuard
    from wsss.models.classifier import build_classifier

    settings = tiny_settings(classifier={"rca": {"embed_dim": 8, "bank_size": 4, "clusters": 2,
                                                 "bank_confidence": 0.0, **rca_overrides}})["classifier"]
    torch.manual_seed(0)
    model = build_classifier(settings, 3).train()
    if model.bank is not None:
        model.bank.update(F.normalize(torch.randn(6, 8), dim=1), torch.tensor([0, 0, 1, 1, 2, 2]))
    if aggregation_ready:
        refresh_centroids(model, settings["rca"], 0)
    loader = [(torch.rand(3, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 1]]), torch.arange(3))]
    train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.0), torch.device("cpu"), epoch,
                    settings, FiniteGuard("test"))
    return model, settings, {name for name, p in model.named_parameters() if p.grad is None}


@pytest.mark.parametrize("rca_overrides, epoch, ready, expected_idle", [
    ({"contrast": True, "aggregation": True}, 0, False, {"aggregation.project", "projection"}),
    ({"contrast": True, "aggregation": True}, 1, False, {"aggregation.project"}),
    ({"contrast": True, "aggregation": True}, 1, True, set()),
    ({"contrast": False, "aggregation": True}, 1, False, {"aggregation.project", "projection"}),
    ({"contrast": False, "aggregation": True}, 1, True, set()),
    ({"contrast": False, "aggregation": True, "aggregation_variant": "public"}, 1, False,
     {"aggregation.project", "aggregation.query", "aggregation.key", "aggregation.value", "projection"}),
    ({"contrast": True, "aggregation": False}, 0, False, {"projection"}),
    ({"contrast": True, "aggregation": False}, 1, False, set()),
])
def test_the_parameters_said_to_sit_out_an_epoch_are_exactly_those_its_loss_does_not_reach(
        rca_overrides, epoch, ready, expected_idle):
    """Under DDP these get zero gradients instead of a per-step search for unused parameters: one missed
    would hang or fail DDP's reduction, one too many would be held still while it should learn."""
    from wsss.classifier.rca_schedule import idle_parameters

    model, settings, without_gradient = grads_after_one_step(rca_overrides, epoch, ready)
    names = {id(p): name for name, p in model.named_parameters()}
    said_idle = {names[id(p)] for p in idle_parameters(model, epoch, settings["rca"])}
    assert said_idle == without_gradient
    idle_modules = {prefix for prefix in expected_idle for name in said_idle if name.startswith(prefix + ".")}
    assert idle_modules == expected_idle and all(name.startswith(tuple(expected_idle)) for name in said_idle)
