"""Classification evaluator printing Dassl's result block.

The block (logged through ``logging``, so it lands in ``log.txt``) reads::

    => result
    * total: 1,000
    * correct: 912
    * accuracy: 91.2%
    * error: 8.8%
    * macro_f1: 90.9%

The official result parsers read the ``* accuracy:`` line. Macro F1 is computed here (no
scikit-learn): the mean over the labels present in the ground truth of
``2 * TP / (2 * TP + FP + FN)``, 0 for a label never predicted nor correct.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from engine import distributed
from engine.metrics import elevater_metric
from engine.registry import Registry

__all__ = ["EVALUATOR_REGISTRY", "EvaluatorBase", "Classification", "EvalTask", "PerTaskMetrics",
           "MultiTaskClassification", "TaskRange", "build_evaluator", "macro_f1_score",
           "confusion_matrix"]

logger = logging.getLogger(__name__)

EVALUATOR_REGISTRY = Registry("evaluator")


def confusion_matrix(y_true: list[int], y_pred: list[int], labels: list[int],
                     normalize: bool = False) -> torch.Tensor:
    """``[len(labels), len(labels)]`` counts (rows: truth, columns: prediction); rows
    normalised to sum to 1 with ``normalize``."""
    index = {label: i for i, label in enumerate(labels)}
    cmat = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            cmat[index[t], index[p]] += 1
    if normalize:
        cmat = cmat / cmat.sum(dim=1, keepdim=True).clamp(min=1)
    return cmat


def macro_f1_score(y_true: list[int], y_pred: list[int]) -> float:
    """Unweighted mean F1 over the labels of ``y_true`` (scikit-learn's ``average='macro'``
    with ``labels=unique(y_true)``), in [0, 1]. Counts per label in one pass: with
    ``2 * TP + FP + FN = (number true) + (number predicted)``."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if not y_true:
        return 0.0
    truth = torch.as_tensor(y_true, dtype=torch.long)
    pred = torch.as_tensor(y_pred, dtype=torch.long)
    if int(truth.min()) < 0 or int(pred.min()) < 0:
        raise ValueError("labels and predictions must be class indices >= 0")
    size = int(max(truth.max(), pred.max())) + 1
    tp = torch.bincount(truth[truth == pred], minlength=size).double()
    denom = (torch.bincount(truth, minlength=size) + torch.bincount(pred, minlength=size)).double()
    labels = torch.unique(truth)
    scores = torch.where(denom[labels] > 0, 2 * tp[labels] / denom[labels].clamp(min=1), 0.0)
    return float(scores.mean())


def gather_keyed_lists(*tables: dict) -> list[dict]:
    """Under torchrun: each table (key -> list) with the lists of every process joined, in
    rank order."""
    parts = distributed.all_gather_objects(tables)
    return [{key: [x for part in parts for x in part[n][key]] for key in table}
            for n, table in enumerate(tables)]


class EvaluatorBase:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> OrderedDict:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error, macro F1; per-class accuracy and confusion matrix on request."""

    def __init__(self, cfg: Any, lab2cname: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname or {}
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: logits ``[B, C]``; ``gt``: labels ``[B]``."""
        pred = mo.max(1)[1]
        self._correct += int(pred.eq(gt).sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.detach().cpu().tolist())
        self._y_pred.extend(pred.detach().cpu().tolist())

    def gather_from_processes(self) -> None:
        """Under torchrun, where each process evaluated its shard: take in every process's
        labels and predictions, so that every process reports the whole split."""
        if distributed.world_size() == 1:
            return
        parts = distributed.all_gather_objects((self._correct, self._total, self._y_true,
                                                self._y_pred))
        self._correct = sum(part[0] for part in parts)
        self._total = sum(part[1] for part in parts)
        self._y_true = [label for part in parts for label in part[2]]
        self._y_pred = [label for part in parts for label in part[3]]

    def evaluate(self) -> OrderedDict:
        if self._total == 0:
            raise RuntimeError("The evaluator saw no samples: the evaluation split is empty")
        results: OrderedDict = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc  # the first value is what trainer.test() returns
        results["error_rate"] = err
        results["macro_f1"] = macro_f1
        logger.info("=> result\n* total: %s\n* correct: %s\n* accuracy: %.1f%%\n"
                    "* error: %.1f%%\n* macro_f1: %.1f%%", f"{self._total:,}",
                    f"{self._correct:,}", acc, err, macro_f1)
        if self.cfg.TEST.PER_CLASS_RESULT:
            results["perclass_accuracy"] = self._log_per_class()
        if self.cfg.TEST.COMPUTE_CMAT and distributed.is_main():
            self._save_cmat()
        return results

    def _log_per_class(self) -> float:
        per_class: dict[int, list[int]] = defaultdict(list)
        for t, p in zip(self._y_true, self._y_pred, strict=True):
            per_class[t].append(int(t == p))
        logger.info("=> per-class result")
        accs = []
        for label in sorted(per_class):
            res = per_class[label]
            acc = 100.0 * sum(res) / len(res)
            accs.append(acc)
            name = self._lab2cname.get(label, str(label))
            logger.info("* class: %d (%s)\ttotal: %s\tcorrect: %s\tacc: %.1f%%", label, name,
                        f"{len(res):,}", f"{sum(res):,}", acc)
        mean_acc = sum(accs) / len(accs)
        logger.info("* average: %.1f%%", mean_acc)
        return mean_acc

    def _save_cmat(self) -> None:
        labels = sorted(set(self._y_true) | set(self._y_pred))
        cmat = confusion_matrix(self._y_true, self._y_pred, labels, normalize=True)
        os.makedirs(self.cfg.OUTPUT_DIR, exist_ok=True)
        save_path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        torch.save(cmat, save_path)
        logger.info('Confusion matrix is saved to "%s"', save_path)


class EvalTask(NamedTuple):
    """One task of a :class:`PerTaskMetrics` evaluation: its classes are the score columns
    ``start:end`` (the whole label space for a single task)."""

    name: str
    metric: str  # an ELEVATER metric: accuracy, mean-per-class or 11point_mAP
    start: int
    end: int


@EVALUATOR_REGISTRY.register()
class PerTaskMetrics(EvaluatorBase):
    """Each task's metric on its own classes, and their average when there are several tasks.

    ``process(mo, gt)`` takes the scores ``[B, C]`` and the truth: labels ``[B]`` or a 0/1 (or
    soft) target matrix ``[B, C]`` (multi-label tasks). A sample belongs to the task whose
    classes hold its first positive label, so several tasks can share one loader (the joint
    multitask label space); its scores and truth are cut to that task's classes. Each task
    logs a result block (``* task:``, ``* total:``, ``* <metric>: X%``); with several tasks a
    last block gives ``* average: X%``. ``evaluate()`` returns the average first (or the
    metric of the task named by ``evalkey``), then ``<task>/<metric>`` for every task.
    """

    def __init__(self, cfg: Any, lab2cname: dict[int, str] | None = None,
                 tasks: list[EvalTask] | None = None, evalkey: str = "average",
                 **kwargs: Any) -> None:
        super().__init__(cfg)
        if not tasks:
            raise ValueError(f"{type(self).__name__} needs the tasks to evaluate "
                             "(build_evaluator(cfg, tasks=[EvalTask(name, metric, start, end)]))")
        names = [task.name for task in tasks]
        if evalkey != "average" and evalkey not in names:
            raise ValueError(f"Evaluation key {evalkey!r} is neither 'average' nor one of the "
                             f"tasks {names} (DATASET.MULTITASK_EVALKEY)")
        for before, after in zip(tasks, tasks[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"Tasks must hold disjoint, increasing class ranges; "
                                 f"{before} and {after} do not")
        if any(task.end <= task.start for task in tasks):
            raise ValueError(f"Every task needs at least one class: {tasks}")
        self.tasks = list(tasks)
        self.evalkey = evalkey
        self._starts = torch.tensor([task.start for task in self.tasks])
        self.reset()

    def reset(self) -> None:
        self._scores: dict[str, list[torch.Tensor]] = {task.name: [] for task in self.tasks}
        self._truth: dict[str, list[torch.Tensor]] = {task.name: [] for task in self.tasks}

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        mo = mo.detach().float().cpu()
        gt = gt.detach().cpu()
        first = gt.long() if gt.dim() == 1 else (gt > 0).float().argmax(dim=1)
        if int(first.min()) < 0 or int(first.max()) >= self.tasks[-1].end:
            raise ValueError(f"labels must lie in [0, {self.tasks[-1].end}), the classes of the "
                             f"tasks; got {int(first.min())}..{int(first.max())}")
        owner = torch.bucketize(first, self._starts, right=True) - 1
        for index, task in enumerate(self.tasks):
            rows = owner == index
            if not rows.any():
                continue
            truth = gt[rows] - task.start if gt.dim() == 1 else gt[rows, task.start:task.end]
            self._scores[task.name].append(mo[rows, task.start:task.end])
            self._truth[task.name].append(truth)

    def gather_from_processes(self) -> None:
        """Under torchrun: every process takes in the others' scores and truth."""
        if distributed.world_size() == 1:
            return
        self._scores, self._truth = gather_keyed_lists(self._scores, self._truth)

    def evaluate(self) -> OrderedDict:
        values: OrderedDict = OrderedDict()
        for task in self.tasks:
            if not self._scores[task.name]:
                raise RuntimeError(f"The evaluator saw no sample of task {task.name}")
            scores = torch.cat(self._scores[task.name]).numpy()
            truth = torch.cat(self._truth[task.name]).numpy()
            values[task.name] = 100.0 * elevater_metric(task.metric, truth, scores)
            logger.info("=> result\n* task: %s\n* total: %s\n* %s: %.2f%%", task.name,
                        f"{len(scores):,}", task.metric, values[task.name])
        results: OrderedDict = OrderedDict()
        if len(self.tasks) > 1:
            average = sum(values.values()) / len(values)
            logger.info("=> result\n* tasks: %d\n* average: %.2f%%", len(values), average)
            if self.evalkey != "average":  # the first value is what trainer.test() returns
                results[self.evalkey] = values[self.evalkey]
            results["average"] = average
        for task in self.tasks:
            results[f"{task.name}/{task.metric}"] = values[task.name]
        return results


class TaskRange(NamedTuple):
    """One task of a multitask label space: its classes are the labels ``start .. end - 1``."""

    name: str
    start: int
    end: int


@EVALUATOR_REGISTRY.register()
class MultiTaskClassification(EvaluatorBase):
    """Accuracy of each task of a multitask label space, each image judged among the classes
    of its own task (the task is the one whose label range holds the image's label), and the
    selection value: the mean of the per-task accuracies, or the accuracy of the one task
    named by ``select`` (``DATASET.MULTITASK_EVALKEY``).

    The log holds one ``* task:`` line per task, then Dassl's result block whose
    ``* accuracy:`` line is the selection value (what the result parsers read)::

        => per-task result
        * task: 0 (Caltech101)	total: 2,465	correct: 2,301	accuracy: 93.3%	macro_f1: 90.1%
        => result
        * total: 5,000
        * correct: 4,100
        * accuracy: 85.1% (average of the 3 per-task accuracies)
    """

    def __init__(self, cfg: Any, tasks: Sequence[TaskRange], select: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(cfg)
        if not tasks:
            raise ValueError("MultiTaskClassification needs the tasks of the label space")
        self.tasks = [TaskRange(task.name, task.start, task.end) if hasattr(task, "name")
                      else TaskRange(*task) for task in tasks]
        if select is None:
            select = cfg.DATASET.get("MULTITASK_EVALKEY", "average")
        names = [task.name for task in self.tasks]
        if select != "average" and select not in names:
            raise ValueError(f"DATASET.MULTITASK_EVALKEY (--multi-task-evalkey) is {select!r}; "
                             f"use 'average' or one of the tasks: {', '.join(names)}")
        self.select = select
        self.reset()

    def reset(self) -> None:
        self._y_true: dict[int, list[int]] = {i: [] for i in range(len(self.tasks))}
        self._y_pred: dict[int, list[int]] = {i: [] for i in range(len(self.tasks))}

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """``mo``: logits over every task's classes ``[B, C]``; ``gt``: global labels ``[B]``."""
        covered = torch.zeros_like(gt, dtype=torch.bool)
        for i, task in enumerate(self.tasks):
            mine = (gt >= task.start) & (gt < task.end)
            covered |= mine
            if mine.any():
                pred = mo[mine, task.start:task.end].argmax(dim=1)
                self._y_true[i].extend((gt[mine] - task.start).tolist())
                self._y_pred[i].extend(pred.tolist())
        if not covered.all():
            raise ValueError(f"labels {gt[~covered].tolist()} belong to no task "
                             f"(tasks cover 0..{self.tasks[-1].end - 1})")

    def gather_from_processes(self) -> None:
        """Under torchrun: every process takes in the others' labels and predictions."""
        if distributed.world_size() == 1:
            return
        self._y_true, self._y_pred = gather_keyed_lists(self._y_true, self._y_pred)

    def per_task(self) -> list[tuple[int, TaskRange, int, int, float]]:
        """(index, task, total, correct, macro F1 in %) of the tasks that had images."""
        rows = []
        for i, task in enumerate(self.tasks):
            truth, pred = self._y_true[i], self._y_pred[i]
            if truth:
                correct = sum(int(t == p) for t, p in zip(truth, pred, strict=True))
                rows.append((i, task, len(truth), correct, 100.0 * macro_f1_score(truth, pred)))
        return rows

    def evaluate(self) -> OrderedDict:
        rows = self.per_task()
        if not rows:
            raise RuntimeError("The evaluator saw no samples: the evaluation split is empty")
        lines = ["=> per-task result"]
        per_task: OrderedDict = OrderedDict()
        for index, task, total, correct, f1 in rows:
            per_task[task.name] = (100.0 * correct / total, f1)
            lines.append(f"* task: {index} ({task.name})\ttotal: {total:,}\t"
                         f"correct: {correct:,}\taccuracy: {per_task[task.name][0]:.1f}%\t"
                         f"macro_f1: {f1:.1f}%")
        if self.select == "average":
            acc = sum(a for a, _ in per_task.values()) / len(per_task)
            how = f"average of the {len(per_task)} per-task accuracies"
        elif self.select in per_task:
            acc, how = per_task[self.select][0], f"task {self.select}, DATASET.MULTITASK_EVALKEY"
        else:
            raise RuntimeError(f"DATASET.MULTITASK_EVALKEY names {self.select}, which had no "
                               "images in this split")
        macro_f1 = sum(f for _, f in per_task.values()) / len(per_task)
        total, correct = sum(r[2] for r in rows), sum(r[3] for r in rows)
        lines += ["=> result", f"* total: {total:,}", f"* correct: {correct:,}",
                  f"* accuracy: {acc:.1f}% ({how})", f"* error: {100.0 - acc:.1f}%",
                  f"* macro_f1: {macro_f1:.1f}% (average over the tasks)"]
        logger.info("\n".join(lines))
        results: OrderedDict = OrderedDict(accuracy=acc, error_rate=100.0 - acc,
                                           macro_f1=macro_f1)
        for name, (task_acc, task_f1) in per_task.items():
            results[f"{name}/accuracy"] = task_acc
            results[f"{name}/macro_f1"] = task_f1
        return results


def build_evaluator(cfg: Any, tasks: Sequence[TaskRange] | None = None,
                    **kwargs: Any) -> EvaluatorBase:
    """The evaluator named by ``cfg.TEST.EVALUATOR``; for data with tasks (``tasks``), the
    default ``Classification`` becomes :class:`PerTaskMetrics` when the tasks name their metrics
    (ELEVATER's), else :class:`MultiTaskClassification`."""
    name = cfg.TEST.EVALUATOR
    if tasks and name == "Classification":
        # tasks that name their metric (ELEVATER's) are scored by it, the others by accuracy
        metrics = all(hasattr(task, "metric") for task in tasks)
        name = "PerTaskMetrics" if metrics else "MultiTaskClassification"
        if metrics:
            kwargs["evalkey"] = cfg.DATASET.get("MULTITASK_EVALKEY", "average")
    if tasks:
        kwargs["tasks"] = tasks
    return EVALUATOR_REGISTRY.get(name)(cfg, **kwargs)
