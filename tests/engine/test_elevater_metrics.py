"""ELEVATER's metrics, the soft-target cross-entropy and the per-task evaluator, on
hand-computed cases."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from engine import distributed
from engine.config import get_cfg_default
from engine.evaluator import (
    EvalTask,
    MultiTaskClassification,
    PerTaskMetrics,
    TaskRange,
    build_evaluator,
)
from engine.losses import soft_cross_entropy, soft_targets
from engine.metrics import (
    elevater_metric,
    eleven_point_map,
    mean_per_class_accuracy,
    top1_accuracy,
)

# one class ranked TP, FP, TP, FP: precision/recall after each image (1, 1/2), (1/2, 1/2),
# (2/3, 1), (1/2, 1); interpolated precision 1 at recall 0..0.5 (6 levels), 2/3 at 0.6..1 (5)
RANKED = (np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]), (6 * 1 + 5 * 2 / 3) / 11)


def test_top1_accuracy_first_maximum_wins_ties():
    scores = np.array([[.9, .1, 0], [.2, .5, .3], [.1, .8, .1], [.3, .3, .4]])
    assert top1_accuracy(np.array([0, 1, 2, 1]), scores) == 0.5
    assert top1_accuracy(np.array([1]), np.array([[1.0, 1.0, 0.0]])) == 0.0
    one_hot = np.eye(3)[[0, 1, 2, 1]]
    assert top1_accuracy(one_hot, scores) == 0.5


def test_mean_per_class_accuracy():
    scores = np.array([[1., 0], [0, 1], [0, 1], [0, 1]])  # predictions 0, 1, 1, 1
    # recall of class 0: 1/3, of class 1: 1/1 -> 2/3 (plain accuracy: 1/2)
    assert mean_per_class_accuracy(np.array([0, 0, 0, 1]), scores) == pytest.approx(2 / 3)
    # a class absent from the truth is dropped before the argmax (ELEVATER's toolkit)
    scores = np.array([[.2, .1, .9], [.1, .3, .8]])
    assert mean_per_class_accuracy(np.array([0, 1]), scores) == 1.0
    assert top1_accuracy(np.array([0, 1]), scores) == 0.0


def test_eleven_point_map_hand_computed():
    scores, truth, expected = RANKED
    assert eleven_point_map(truth[:, None], scores[:, None]) == pytest.approx(expected)
    # a perfectly ranked class scores 1; a class with no positive is left out of the mean
    perfect = np.array([.1, .9, .2, .3]), np.array([0, 1, 0, 0])
    unused = np.array([.5, .4, .3, .2]), np.zeros(4)
    both = eleven_point_map(np.stack([truth, perfect[1], unused[1]], 1),
                            np.stack([scores, perfect[0], unused[0]], 1))
    assert both == pytest.approx((expected + 1) / 2)
    assert elevater_metric("11point_mAP", truth[:, None], scores[:, None]) == \
        pytest.approx(28 / 33)
    with pytest.raises(ValueError, match="mean-per-class"):
        elevater_metric("map", truth, scores)


def test_soft_targets_and_cross_entropy():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    # target spread over classes 0 and 2: -(log_softmax_0 + log_softmax_2) / 2
    lse = 3 + math.log(1 + math.exp(-1) + math.exp(-2))
    expected = -((1 - lse) + (3 - lse)) / 2
    multi_hot = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.equal(soft_targets(multi_hot), torch.tensor([[0.5, 0.0, 0.5]]))
    assert soft_cross_entropy(logits, multi_hot).item() == pytest.approx(expected, rel=1e-6)
    batch = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    hard = F.cross_entropy(batch, labels)
    assert torch.allclose(soft_cross_entropy(batch, labels), hard)
    assert torch.allclose(soft_cross_entropy(batch, F.one_hot(labels, 4)), hard)
    # a negative image (no label) adds nothing: its target row stays zeros
    assert torch.equal(soft_targets(torch.zeros(1, 3)), torch.zeros(1, 3))
    with_negative = torch.cat([multi_hot, torch.zeros(1, 3)])
    assert soft_cross_entropy(torch.cat([logits, logits]), with_negative).item() == \
        pytest.approx(expected / 2, rel=1e-6)


def two_tasks() -> list[EvalTask]:
    return [EvalTask("a", "accuracy", 0, 3), EvalTask("b", "11point_mAP", 3, 5)]


def test_per_task_evaluator_routes_by_label_and_averages(caplog):
    evaluator = PerTaskMetrics(get_cfg_default(), tasks=two_tasks())
    scores, truth, expected = RANKED
    # task a: 4 images, 3 right (column 4 belongs to task b and does not count for a)
    a_scores = torch.tensor([[5., 0, 0, 0, 9], [0, 5, 0, 0, 9], [0, 0, 5, 0, 9], [5, 0, 0, 0, 9]])
    a_truth = F.one_hot(torch.tensor([0, 1, 2, 1]), 5).float()
    # task b (columns 3, 4): column 3 is the ranked case, column 4 holds the other images,
    # ranked perfectly; task a's columns do not count for b
    b_scores = torch.zeros(4, 5)
    b_scores[:, 3] = torch.tensor(scores)
    b_scores[:, 4] = torch.tensor(1.0 - truth)
    b_scores[:, 0] = 100.0
    b_truth = torch.zeros(4, 5)
    b_truth[:, 3] = torch.tensor(truth, dtype=torch.float32)
    b_truth[:, 4] = 1 - b_truth[:, 3]
    evaluator.process(a_scores[:2], a_truth[:2])
    evaluator.process(torch.cat([a_scores[2:], b_scores]), torch.cat([a_truth[2:], b_truth]))
    with caplog.at_level(logging.INFO, logger="engine.evaluator"):
        results = evaluator.evaluate()
    assert list(results) == ["average", "a/accuracy", "b/11point_mAP"]
    assert results["a/accuracy"] == pytest.approx(75.0)
    assert results["b/11point_mAP"] == pytest.approx(100 * (expected + 1) / 2)
    assert results["average"] == pytest.approx((75.0 + results["b/11point_mAP"]) / 2)
    assert "* task: a\n* total: 4\n* accuracy: 75.00%" in caplog.text
    assert f"* task: b\n* total: 4\n* 11point_mAP: {results['b/11point_mAP']:.2f}%" \
        in caplog.text
    assert f"* tasks: 2\n* average: {results['average']:.2f}%" in caplog.text


def test_single_task_with_labels_and_evalkey():
    tasks = [EvalTask("pets", "mean-per-class", 0, 2)]
    evaluator = PerTaskMetrics(get_cfg_default(), tasks=tasks)
    evaluator.process(torch.tensor([[1., 0], [0, 1], [0, 1], [0, 1]]), torch.tensor([0, 0, 0, 1]))
    assert list(evaluator.evaluate().values()) == [pytest.approx(100 * 2 / 3)]
    evaluator = PerTaskMetrics(get_cfg_default(), tasks=two_tasks(), evalkey="b")
    evaluator.process(torch.tensor([[1., 0, 0, 0, 0], [0, 0, 0, 1, 0]]), torch.tensor([1, 3]))
    results = evaluator.evaluate()
    assert list(results)[:2] == ["b", "average"] and results["b"] == 100.0
    assert results["average"] == 50.0
    with pytest.raises(ValueError, match="MULTITASK_EVALKEY"):
        PerTaskMetrics(get_cfg_default(), tasks=two_tasks(), evalkey="c")
    with pytest.raises(ValueError, match="labels must lie in \\[0, 5\\)"):
        evaluator.process(torch.zeros(1, 5), torch.tensor([5]))


def test_elevater_evaluator_from_the_config():
    import datasets  # noqa: F401  (registers ElevaterClassification)

    cfg = get_cfg_default()
    cfg.DATASET.COOP = False
    cfg.DATASET.DATASET = "oxford-iiit-pets,caltech-101"
    cfg.DATASET.MULTITASK = True
    cfg.DATASET.MULTITASK_EVALKEY = "average"
    cfg.TEST.EVALUATOR = "ElevaterClassification"
    evaluator = build_evaluator(cfg, lab2cname={})
    assert evaluator.tasks == [EvalTask("caltech-101", "mean-per-class", 0, 102),
                               EvalTask("oxford-iiit-pets", "mean-per-class", 102, 139)]


@pytest.mark.parametrize("kind", ["PerTaskMetrics", "MultiTaskClassification"])
def test_shards_of_two_processes_give_the_whole_split(kind, monkeypatch):
    """Under torchrun each process evaluates its shard; after the gather, the metrics are those
    of one evaluator that saw every image (rank 0's view, the other process simulated)."""
    if kind == "PerTaskMetrics":
        def make():
            return PerTaskMetrics(get_cfg_default(), tasks=two_tasks())
    else:
        def make():
            return MultiTaskClassification(get_cfg_default(),
                                           tasks=[TaskRange("a", 0, 3), TaskRange("b", 3, 5)])
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4, 3, 2, 1, 0, 4, 3, 4])
    whole, mine, other = make(), make(), make()
    whole.process(logits, labels)
    mine.process(logits[:5], labels[:5])
    other.process(logits[5:], labels[5:])
    tables = {PerTaskMetrics: ("_scores", "_truth"), MultiTaskClassification:
              ("_y_true", "_y_pred")}[type(mine)]
    other_part = tuple(getattr(other, name) for name in tables)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: [obj, other_part])
    mine.gather_from_processes()
    assert mine.evaluate() == pytest.approx(whole.evaluate())
