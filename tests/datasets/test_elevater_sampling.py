"""ELEVATER's few-shot draw and splits: hand-worked cases, and vision-datasets 0.2.29's own
choices on the same label lists (tests/datasets/fixtures)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from datasets.elevater_sampling import sample_few_shot, split_single_task, split_train_val

FIXTURE = Path(__file__).parent / "fixtures" / "vision_datasets_0_2_29_sampling.json"


def visiting(sequence: list[tuple[int, ...]], seed: int) -> tuple[list[tuple[int, ...]], list[int]]:
    """Labels placed so that ``random.Random(seed)`` visits them in ``sequence`` order; returns
    the label list and the position of each visit."""
    order = list(range(len(sequence)))
    random.Random(seed).shuffle(order)
    labels: list[tuple[int, ...]] = [()] * len(sequence)
    for visit, position in enumerate(order):
        labels[position] = sequence[visit]
    return labels, order


def test_multiclass_keeps_k_per_class_in_shuffled_order_and_stops():
    sequence = [(0,), (0,), (0,), (1,), (2,), (1,), (2,), (2,)]
    labels, at = visiting(sequence, seed=7)
    # visit 2 is a third 0 (skipped); after visit 6 every class has 2: the draw stops
    assert sample_few_shot(labels, 3, shots=2, seed=7) == [at[v] for v in (0, 1, 3, 4, 5, 6)]


def test_multilabel_rule_rejects_an_image_whose_classes_are_all_well_served():
    sequence = [(1,)] * 4 + [(0, 1)] * 4 + [(0,), (0,)]
    labels, at = visiting(sequence, seed=3)
    # K = 4: visits 4-6 are kept (their rarer class has <= K/2); visit 7 sees counts (3, 7):
    # min 3 > 2 and max 7 > 6, so it is rejected; visit 8 completes class 0 and the draw stops
    assert sample_few_shot(labels, 2, shots=4, seed=3) == [at[v] for v in (0, 1, 2, 3, 4, 5, 6, 8)]


def test_negatives_up_to_k():
    labels, at = visiting([(), (), (0,), (0,)], seed=1)
    assert sample_few_shot(labels, 1, shots=1, seed=1) == [at[0], at[2]]


def test_same_seed_same_images_other_seed_others():
    labels = [(i % 5,) for i in range(100)]
    first = sample_few_shot(labels, 5, shots=3, seed=1)
    assert first == sample_few_shot(labels, 5, shots=3, seed=1)
    assert sorted(first) != sorted(sample_few_shot(labels, 5, shots=3, seed=2))
    with pytest.raises(ValueError, match="NUM_SAMPLES_PER_CLASS"):
        sample_few_shot(labels, 5, shots=0, seed=1)


def test_single_task_split_first_fifth_of_each_class():
    labels = [(1,), (0,), (1,), (1,), (0,), (1,), (1,)]
    # class 1: ceil(5 * 0.2) = 1 -> position 0; class 0: ceil(2 * 0.2) = 1 -> position 1
    train, val = split_single_task(labels, 2, multilabel=False)
    assert sorted(val) == [0, 1] and train == [2, 3, 4, 5, 6]
    # 5 shots: 4 train, 1 val per class; 20 shots: 16 and 4; 3 images: ceil(0.6) = 1 val
    for shots, n_val in ((5, 1), (20, 4), (3, 1), (1, 1)):
        assert len(split_single_task([(0,)] * shots, 1, multilabel=False)[1]) == n_val
    with pytest.raises(ValueError, match="no label"):
        split_single_task([(0,), ()], 1, multilabel=False)


def test_single_task_split_multilabel_greedy():
    labels = [(0, 1), (1,), (0,), (2,), (1, 2)]
    # wanted per label: ceil(0.4), ceil(0.6), ceil(0.4) = 1, 1, 1. Label 0 takes image 0,
    # which also serves label 1; label 2 then takes image 3.
    assert split_single_task(labels, 3, multilabel=True) == ([1, 2, 4], [0, 3])


def test_balanced_split_two_shots_one_each():
    labels = [(0,), (1,), (0,), (1,)]
    train, val = split_train_val(labels, 2, 1 - 0.2, seed=1)
    assert sorted(train + val) == [0, 1, 2, 3]
    assert sorted(labels[i] for i in train) == [(0,), (1,)] == sorted(labels[i] for i in val)


@pytest.mark.parametrize("case", json.loads(FIXTURE.read_text())["cases"],
                         ids=lambda c: f"{c['name']}-{c['shots']}shot-seed{c['seed']}")
def test_same_choices_as_vision_datasets_0_2(case):
    labels = [tuple(image) for image in case["labels"]]
    sampled = sample_few_shot(labels, case["num_classes"], case["shots"], case["seed"])
    assert sampled == case["sampled"]
    train, val = split_train_val([labels[i] for i in sampled], case["num_classes"], 1 - 0.2,
                                 case["seed"])
    assert (train, val) == (case["train"], case["val"])
