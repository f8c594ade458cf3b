"""Dataset items and the dataset base class, with Dassl's contracts.

``Datum`` and ``DatasetBase`` keep the attribute and method names of
``dassl.data.datasets.base_dataset`` so that dataset files written for Dassl port with an
import change. Few-shot selection is the pure function :func:`sample_few_shot`, which draws
from Python's global ``random`` exactly as Dassl's ``generate_fewshot_dataset`` does, so the
same seed picks the same images as the official code.
"""

from __future__ import annotations

import logging
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

MAX_LISTED = 10  # classes named in a message


class Datum:
    """One labelled image: path, label, domain and class name."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "",
                 check_file: bool = False) -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        if check_file and not os.path.isfile(impath):
            raise FileNotFoundError(f"Image not found: {impath}")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Datum):
            return NotImplemented
        return (self._impath, self._label, self._domain, self._classname) == (
            other._impath, other._label, other._domain, other._classname)

    def __hash__(self) -> int:
        return hash((self._impath, self._label, self._domain, self._classname))

    def __repr__(self) -> str:
        return (f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, "
                f"classname={self._classname!r})")


def split_by_label(items: Iterable[Datum]) -> dict[int, list[Datum]]:
    """Group items by label; labels keep the order in which they first appear."""
    groups: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return groups


def split_by_domain(items: Iterable[Datum]) -> dict[int, list[Datum]]:
    groups: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        groups[item.domain].append(item)
    return groups


def sample_few_shot(items: Sequence[Datum], num_shots: int, repeat: bool = False,
                    rng: random.Random | None = None, what: str = "images") -> list[Datum]:
    """Keep ``num_shots`` items per label, as Dassl's ``generate_fewshot_dataset``.

    Labels are visited in order of first appearance; each draws ``rng.sample(items, K)``
    (``rng.choices`` with ``repeat`` when a class has fewer than K items, else all of them,
    with a warning naming those classes and their counts; ``what`` says which items they are).
    ``rng`` defaults to Python's global ``random`` module, which train.py seeds from SEED.
    """
    if num_shots < 1:
        return list(items)
    draw = rng if rng is not None else random
    selected: list[Datum] = []
    short: list[str] = []
    for group in split_by_label(items).values():
        if len(group) >= num_shots:
            selected.extend(draw.sample(group, num_shots))
            continue
        short.append(f"{group[0].classname!r} has {len(group)}")
        if repeat:
            selected.extend(draw.choices(group, k=num_shots))
        else:
            selected.extend(group)
    warn_fewer_shots(short, num_shots, what, repeat)
    return selected


def warn_fewer_shots(short: Sequence[str], num_shots: int, what: str, repeat: bool) -> None:
    """The warning for classes with fewer items than the shots asked for (``short``: one
    "'name' has N" per class)."""
    if short:
        more = f" and {len(short) - MAX_LISTED} more" if len(short) > MAX_LISTED else ""
        logger.warning("%s fewer %s than the %d shots asked for (%s%s): %s",
                       "1 class has" if len(short) == 1 else f"{len(short)} classes have",
                       what, num_shots, ", ".join(short[:MAX_LISTED]), more,
                       "drawn with replacement" if repeat else "all of them are kept")


def class_names(splits: dict[str, Sequence[Datum] | None],
                owner: str) -> tuple[dict[int, str], list[str]]:
    """``{label: class name}`` and the names in label order, from all labelled splits together
    (Dassl takes them from train_x alone: a class absent from it was silently dropped).

    Labels must be 0..n-1 and each must have one class name; otherwise ``ValueError`` names
    ``owner`` (the dataset) and the splits involved.
    """
    first: dict[int, tuple[str, str]] = {}
    for split, items in splits.items():
        for item in items or []:
            name, where = first.setdefault(item.label, (item.classname, split))
            if name != item.classname:
                raise ValueError(f"{owner}: label {item.label} is {name!r} in {where} but "
                                 f"{item.classname!r} in {split} ({item.impath}); one label, "
                                 f"one class name")
    absent = sorted(set(range(max(first, default=-1) + 1)) - set(first))
    if absent or any(label < 0 for label in first):
        wrong = absent or sorted(label for label in first if label < 0)
        raise ValueError(f"{owner}: labels must be 0..n-1 with images of every label in some "
                         f"split; labels {wrong[:MAX_LISTED]} break that")
    return ({label: first[label][0] for label in sorted(first)},
            [first[label][0] for label in sorted(first)])


class DatasetBase:
    """A dataset: ``train_x`` (labelled training items), ``train_u``, ``val`` and ``test``.

    Subclasses read their files in ``__init__(self, cfg)`` and call
    ``super().__init__(train_x=..., val=..., test=...)``.
    """

    dataset_dir = ""  # folder name under DATASET.ROOT
    domains: list[str] = []  # domain names, for multi-domain datasets
    # True for a protocol that evaluates classes absent from training (they stay in the label
    # space, named, and a warning lists them); False: such a class is an error naming it.
    allow_untrained_classes = False

    def __init__(self, train_x: list[Datum] | None = None, train_u: list[Datum] | None = None,
                 val: list[Datum] | None = None, test: list[Datum] | None = None) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        splits = {"train_x": train_x, "val": val, "test": test}  # train_u is unlabelled
        self._lab2cname, self._classnames = self.label_space(splits)
        self._num_classes = len(self._classnames)
        trained = {label for item in train_x or [] for label in self.item_labels(item)}
        untrained = sorted(set(self._lab2cname) - trained)
        if train_x is not None and untrained:  # None: a test-only dataset
            self.report_untrained(untrained, splits)

    def label_space(self, splits: dict[str, Sequence[Datum] | None]
                    ) -> tuple[dict[int, str], list[str]]:
        """``{label: class name}`` and the names in label order (:func:`class_names`); a
        dataset whose label space is given by its files (ELEVATER's label maps) overrides it."""
        return class_names(splits, type(self).__name__)

    @staticmethod
    def item_labels(item: Datum) -> Sequence[int]:
        """Every label of ``item`` (several for a multi-label item, none for a negative)."""
        return getattr(item, "labels", (item.label,))

    @property
    def train_x(self) -> list[Datum] | None:
        return self._train_x

    @property
    def train_u(self) -> list[Datum] | None:
        return self._train_u

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum] | None:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Iterable[Datum]) -> int:
        labels = {item.label for item in data_source}
        return max(labels) + 1 if labels else 0

    @staticmethod
    def get_lab2cname(data_source: Iterable[Datum]) -> tuple[dict[int, str], list[str]]:
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def report_untrained(self, labels: list[int],
                         splits: dict[str, Sequence[Datum] | None]) -> None:
        """Classes with images in val or test but none in train_x: an error, or with
        ``allow_untrained_classes`` a warning (they are scored from their names alone)."""
        present = {name: {item.label for item in items or []} for name, items in splits.items()
                   if name != "train_x"}
        listed = ", ".join(
            f"{label} {self._lab2cname[label]!r} (in "
            f"{' and '.join(name for name, labels in present.items() if label in labels)})"
            for label in labels[:MAX_LISTED])
        more = f" and {len(labels) - MAX_LISTED} more" if len(labels) > MAX_LISTED else ""
        what = (f"{type(self).__name__}: {len(labels)} of {self._num_classes} classes have no "
                f"training image (after the few-shot selection and the base/new split): "
                f"{listed}{more}")
        if self.allow_untrained_classes:
            logger.warning("%s; they are evaluated from their class names alone", what)
            return
        raise ValueError(f"{what}. Every class needs training images: check the split file "
                         f"(and delete a stale few-shot cache in split_fewshot/). A protocol that "
                         f"evaluates classes unseen in training sets allow_untrained_classes = "
                         f"True on its dataset class.")

    def check_input_domains(self, source_domains: Sequence[str],
                            target_domains: Sequence[str]) -> None:
        for domain in list(source_domains) + list(target_domains):
            if domain not in self.domains:
                raise ValueError(f"Input domain '{domain}' is not one of {self.domains} "
                                 f"of {type(self).__name__}")

    def generate_fewshot_dataset(self, *data_sources: Sequence[Datum], num_shots: int = -1,
                                 repeat: bool = False):
        """Dassl's method: one :func:`sample_few_shot` per data source, in the order given."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        output = [sample_few_shot(source, num_shots, repeat) for source in data_sources]
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source: Iterable[Datum]) -> dict[int, list[Datum]]:
        return split_by_label(data_source)

    def split_dataset_by_domain(self, data_source: Iterable[Datum]) -> dict[int, list[Datum]]:
        return split_by_domain(data_source)
