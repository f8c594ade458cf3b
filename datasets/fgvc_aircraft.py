"""FGVCAircraft, read from the dataset's own split files.

``variants.txt`` lists the 100 variant names, one a line; a variant's label is its line number
(from 0). ``images_variant_{train,val,test}.txt`` hold ``<image id> <variant name>`` lines; the
image is ``images/<image id>.jpg``. Class names are the variant names as written (e.g.
``707-320``, ``A300B4``).
"""

from __future__ import annotations

import os

from datasets.reader import ProtocolDataset
from datasets.splits import check_images, require_path
from engine.data.datasets import Datum
from engine.registry import DATASET_REGISTRY

SPLIT_FILES = {"train": "images_variant_train.txt", "val": "images_variant_val.txt",
               "test": "images_variant_test.txt"}


@DATASET_REGISTRY.register()
class FGVCAircraft(ProtocolDataset):
    """FGVC-Aircraft 2013b (``data/`` renamed ``fgvc_aircraft/``), 100 variants."""

    dataset_dir = "fgvc_aircraft"
    image_folder = "images"
    docs_anchor = "FGVCAircraft"

    def read_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        variants = os.path.join(self.dataset_dir, "variants.txt")
        require_path(variants, "Variant list", self.fix_hint())
        with open(variants, encoding="utf-8") as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {name: label for label, name in enumerate(classnames)}
        self.check_image_dir()
        splits = [self.read_list(SPLIT_FILES[part], cname2lab) for part in ("train", "val", "test")]
        return splits[0], splits[1], splits[2]

    def read_list(self, filename: str, cname2lab: dict[str, int]) -> list[Datum]:
        path = os.path.join(self.dataset_dir, filename)
        require_path(path, "Split file", self.fix_hint())
        items = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                image_id, _, classname = line.strip().partition(" ")
                if not image_id:
                    continue
                if classname not in cname2lab:
                    raise ValueError(f"{path}, line {number}: variant {classname!r} is not in "
                                     f"variants.txt; {self.fix_hint()}")
                items.append(Datum(impath=os.path.join(self.image_dir, f"{image_id}.jpg"),
                                   label=cname2lab[classname], classname=classname))
        check_images(items, path, f"Check that the images are in {self.image_dir}. "
                                  f"{self.fix_hint()}")
        return items
