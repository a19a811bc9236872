"""Where the semantic aggregation looks, on hand-made attention and label maps with known answers."""

import numpy as np
import pytest
import torch

from wsss.evaluation.attention import attention_tally, cell_centres, cell_kinds, class_attention, empty_tally, summarise_tally
from wsss.data.parts import encode_parts
from wsss.models.rca import SemanticAggregation


def test_class_attention_sums_each_class_s_centroids():
    # 2 classes x 2 clusters, centroids stored class by class: [c0, c0, c1, c1]
    attention = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.125, 0.125]]])  # (1, 2 cells, 4)
    mass = class_attention(attention, 2)
    assert mass.shape == (1, 2, 2)
    assert torch.allclose(mass[0], torch.tensor([[0.3, 0.75], [0.7, 0.25]]))


def test_class_attention_refuses_centroids_not_whole_per_class():
    with pytest.raises(ValueError, match="5 centroids"):
        class_attention(torch.zeros(1, 3, 5), 2)


def test_class_attention_of_the_aggregation_sums_to_one_per_cell():
    aggregation = SemanticAggregation(feature_dim=4, embed_dim=3, num_centroids=6)
    aggregation.set_centroids(torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)),
                                                            dim=1))
    mass = class_attention(aggregation.attention(torch.randn(2, 3, 4, 5)), 3)
    assert mass.shape == (2, 3, 20) and torch.allclose(mass.sum(1), torch.ones(2, 20))


def test_cell_centres_sample_the_middle_pixel_of_each_cell():
    labels = np.arange(64).reshape(8, 8)
    assert cell_centres(labels, (2, 2)).tolist() == [[18, 22], [50, 54]]  # pixels (2, 2), (2, 6), (6, 2), (6, 6)
    assert cell_centres(labels, (8, 8)).tolist() == labels.tolist()


def test_cell_kinds_tell_body_marking_background_and_ignore():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 2  # object of class 1
    truth[2:, 2:] = 255  # ignore
    instances = np.zeros((4, 4), int)
    instances[:2, :2] = 1
    marking = np.zeros((4, 4), bool)
    marking[0, 0] = True
    labels, kinds = cell_kinds(truth, encode_parts(instances, marking), (4, 4))
    assert labels[0, 0] == 2 and kinds[0, 0] == 1  # marking
    assert kinds[0, 1] == 0 and kinds[1, 1] == 0  # body
    assert kinds[0, 3] == 2 and kinds[3, 0] == 2  # background
    assert kinds[3, 3] == -1  # ignore


def test_attention_tally_on_a_hand_made_image():
    # 2 classes; a 1 x 4 grid: body of class 1, marking of class 1, background, ignore
    labels = np.array([[2, 2, 0, 255]])
    kinds = np.array([[0, 1, 2, -1]])
    mass = np.array([[[0.4, 0.1, 0.7, 0.5]],  # class 0
                     [[0.6, 0.9, 0.3, 0.5]]])  # class 1
    tally = attention_tally(mass, labels, kinds, tags=[1])
    assert tally["body"].tolist() == pytest.approx([0.6, 1, 1, 0.5])
    assert tally["marking"].tolist() == pytest.approx([0.9, 1, 1, 0.5])
    assert tally["background"].tolist() == pytest.approx([0.3, 0, 1, 0.5])  # the tag's mass; class 0 on top
    figures = summarise_tally(tally)
    assert figures["body"] == {"own_class_attention": pytest.approx(0.6), "uniform_attention": 0.5,
                               "own_class_top": 1.0, "cells": 1}
    assert figures["background"]["tag_attention"] == pytest.approx(0.3) and figures["background"]["tag_top"] == 0.0


def test_a_body_cell_attending_another_class_is_not_on_top():
    tally = attention_tally(np.array([[[0.8]], [[0.2]]]), np.array([[2]]), np.array([[0]]), tags=[1])
    assert tally["body"].tolist() == pytest.approx([0.2, 0, 1, 0.5])


def test_an_empty_tally_has_no_figures():
    figures = summarise_tally(empty_tally())
    assert figures["body"]["own_class_attention"] is None and figures["background"]["cells"] == 0
