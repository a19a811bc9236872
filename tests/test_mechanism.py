import numpy as np
import pytest

from wsss.data.parts import encode_parts
from wsss.evaluation.mechanism import (add_counts, background_counts, background_scores, empty_counts, part_counts,
                                       recalls, threshold_at_background_rate)
from wsss.pseudo_labels.make import seed_label


def test_threshold_lets_the_given_share_of_background_scores_exceed_it():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 0.0])
    assert threshold_at_background_rate(scores, 0.2) == 0.7  # 0.8 and 0.9 above it
    assert threshold_at_background_rate(scores, 0.25) == 0.7  # 2.5 scores allowed: still two
    assert threshold_at_background_rate(scores, 0.0) == 0.9
    assert threshold_at_background_rate(scores, 1.0) < 0.0


def test_threshold_with_ties_never_exceeds_the_rate():
    scores = np.array([0.0] * 6 + [0.5] * 4)
    threshold = threshold_at_background_rate(scores, 0.3)
    assert threshold == 0.5 and (scores > threshold).mean() == 0.0
    assert threshold_at_background_rate(scores, 0.4) == 0.0


def test_threshold_refuses_a_rate_outside_zero_one_and_no_scores():
    with pytest.raises(ValueError, match="rate"):
        threshold_at_background_rate(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="no background"):
        threshold_at_background_rate(np.array([]), 0.1)


def test_background_scores_and_the_seeds_false_positive_rate_agree():
    truth = np.zeros((4, 5), np.uint8)
    truth[1:3, 1:3] = 2
    cams = np.zeros((1, 4, 5), np.float32)
    cams[0, 0, :] = [0.1, 0.2, 0.3, 0.4, 0.5]  # background row
    cams[0, 1:3, 1:3] = 0.9
    scores = background_scores(cams, truth)
    assert sorted(scores[scores > 0].tolist()) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert scores.size == 16
    threshold = threshold_at_background_rate(scores, 2 / 16)
    labels = seed_label(cams, [1], threshold)
    assert background_counts(labels, truth) == (2, 16)
    assert background_scores(np.zeros((0, 4, 5)), truth).max() == 0.0  # no tags: never foreground


def two_objects():
    """A 10x10 image: object 1 (class 1, 30 pixels: body 20, marking 10) and object 2 (class 3, 6 pixels: body 4,
    marking 2)."""
    instances = np.zeros((10, 10), np.int32)
    marking = np.zeros((10, 10), bool)
    instances[0:3, 0:10] = 1
    marking[0, 0:10] = True
    instances[6:8, 6:9] = 2
    marking[6, 6:8] = True
    truth = np.where(instances == 1, 1, np.where(instances == 2, 3, 0)).astype(np.uint8)
    return truth, encode_parts(instances, marking)


def test_part_counts_of_a_hand_made_image():
    truth, parts = two_objects()
    labels = np.zeros_like(truth)
    labels[0, :] = 1  # object 1's marking, all of it
    labels[1, :5] = 1  # half of its body's first row: 5 of 20 body pixels
    labels[2, :5] = 2  # wrong class: no hit
    labels[6, 6:9] = 3  # object 2: its 2 marking pixels and 1 of its 4 body pixels
    counts = part_counts(labels, truth, parts, large_share=0.15)
    assert {key: value.tolist() for key, value in counts.items()} == {
        "body": [6, 24], "marking": [12, 12], "large_body": [5, 20], "large_marking": [10, 10]}
    assert recalls(counts) == {"body": 0.25, "marking": 1.0, "large_body": 0.25, "large_marking": 1.0}


def test_counts_add_over_images_and_recall_is_none_without_pixels():
    truth, parts = two_objects()
    counts = part_counts(truth, truth, parts, large_share=0.5)  # nothing is large
    assert recalls(counts)["large_body"] is None and recalls(counts)["body"] == 1.0
    total = add_counts(add_counts(empty_counts(), counts), part_counts(np.zeros_like(truth), truth, parts))
    assert total["body"].tolist() == [24, 48]
