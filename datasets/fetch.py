r"""Download the benchmarks into the layout the readers expect, then check them.

    python -m datasets.fetch EuroSAT DescribableTextures --root $DATA
    python -m datasets.fetch coop --root $DATA        # the fifteen CoOp-layout benchmarks
    python -m datasets.fetch elevater --root $DATA    # ELEVATER's 20 tasks (MVLPT's targets)
    python -m datasets.fetch cifar-10 --root $DATA    # one ELEVATER task

A name is a benchmark's ``DATASET.NAME`` (``EuroSAT``), its config name (``eurosat``) or an
ELEVATER task (where the two meet, ``dtd``, the ELEVATER task, as in ``datasets.check``). Every
file comes from the address DATASETS.md gives (CoOp's split files from Google Drive; ELEVATER's
from its toolkit's storage, with the read token of ELEVATER's DataDownload README), through
``gdown``, resumable; its size and sha256 are recorded at the first download
(``ROOT/.downloads/records.json``) and compared at every later one. Archives are unpacked
member by member (a member leaving the target, or a link, is refused) and then deleted
(``--keep-archives`` keeps them in ``ROOT/.downloads/``); ELEVATER's zips stay as they are,
since its reader reads them. Sources that need a login or a click-through (ImageNet,
ImageNet-Sketch) are printed with where to put them. ``python -m datasets.check`` runs last.
``--mirror URL`` (or ``DATASETS_MIRROR``) reads every file from ``URL/<name>/<file name>``
instead, e.g. a copy inside a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from datasets.benchmarks import ALL_BENCHMARKS
from datasets.elevater_tasks import ELEVATER_TASKS, TASKS_BY_NAME
from engine.errors import UserError
from engine.fetch import Expected, Records, archive_kind, download, sha256_file, unpack


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"


# ELEVATER's toolkit storage (Computer-Vision-in-the-Wild/DataDownload,
# classification/download_datasets.py) and the read-only access token its README publishes.
ELEVATER_STORE = "https://cvinthewildeus.blob.core.windows.net/datasets"
ELEVATER_TOKEN = ("sp=r&st=2023-08-28T01:41:20Z&se=3023-08-28T09:41:20Z&sv=2022-11-02&sr=c"
                  "&sig=Msoq5dIl%2Fve6F01edGr8jgcZUt7rtsuJ896xvstSNfM%3D")
IMAGENET_CLASSNAMES = _drive("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF")


@dataclass(frozen=True)
class Step:
    """One file: its address, where it lands (relative to the root; archives under
    ``.downloads/<name>/``), and for an archive the folder it is unpacked into (``.``: the
    root) with ``take`` (archive folder → place) when only part of it is kept."""

    url: str
    file: str
    unpack_to: str | None = None
    take: dict[str, str] | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    name: str  # DATASET.NAME, or the ELEVATER task
    folder: str  # what the reader reads, relative to the root
    steps: tuple[Step, ...]
    manual: str = ""  # what must be fetched by hand, and where it goes ({root} filled in)
    aliases: tuple[str, ...] = field(default_factory=tuple)


def _archive(name: str, url: str, unpack_to: str, take: dict[str, str] | None = None) -> Step:
    base = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return Step(url, f".downloads/{name}/{base}", unpack_to, take)


def _split(name: str, folder: str, file_id: str) -> Step:
    return Step(_drive(file_id), f"{folder}/split_zhou_{name}.json")


VGG = "https://www.robots.ox.ac.uk/~vgg/data"
COOP_SOURCES: tuple[Source, ...] = (
    Source("ImageNet", "imagenet", (Step(IMAGENET_CLASSNAMES, "imagenet/classnames.txt"),),
           manual="ImageNet needs an account at https://image-net.org: extract its training "
                  "and validation images into {root}/imagenet/images/train/ and images/val/, "
                  "one folder per class (n01440764, ...; see DATASETS.md)"),
    Source("Caltech101", "caltech-101", (
        _archive("Caltech101", "http://www.vision.caltech.edu/Image_Datasets/Caltech101/"
                 "101_ObjectCategories.tar.gz", "caltech-101"),
        _split("Caltech101", "caltech-101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"))),
    Source("OxfordPets", "oxford_pets", (
        _archive("OxfordPets", f"{VGG}/pets/data/images.tar.gz", "oxford_pets"),
        _archive("OxfordPets", f"{VGG}/pets/data/annotations.tar.gz", "oxford_pets"),
        _split("OxfordPets", "oxford_pets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"))),
    Source("StanfordCars", "stanford_cars", (
        _archive("StanfordCars", "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
                 "stanford_cars"),
        _archive("StanfordCars", "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
                 "stanford_cars"),
        _archive("StanfordCars", "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                 "stanford_cars"),
        Step("http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat",
             "stanford_cars/cars_test_annos_withlabels.mat"),
        _split("StanfordCars", "stanford_cars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"))),
    Source("OxfordFlowers", "oxford_flowers", (
        _archive("OxfordFlowers", f"{VGG}/flowers/102/102flowers.tgz", "oxford_flowers"),
        Step(f"{VGG}/flowers/102/imagelabels.mat", "oxford_flowers/imagelabels.mat"),
        Step(_drive("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"), "oxford_flowers/cat_to_name.json"),
        _split("OxfordFlowers", "oxford_flowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"))),
    Source("Food101", "food-101", (
        _archive("Food101", "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz", "."),
        _split("Food101", "food-101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"))),
    Source("FGVCAircraft", "fgvc_aircraft", (
        _archive("FGVCAircraft", f"{VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz", ".",
                 {"fgvc-aircraft-2013b/data": "fgvc_aircraft"}),)),
    Source("SUN397", "sun397", (
        _archive("SUN397", "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                 "sun397"),
        _archive("SUN397", "https://vision.princeton.edu/projects/2010/SUN/download/"
                 "Partitions.zip", "sun397"),
        _split("SUN397", "sun397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"))),
    Source("DescribableTextures", "dtd", (
        _archive("DescribableTextures", f"{VGG}/dtd/download/dtd-r1.0.1.tar.gz", "."),
        _split("DescribableTextures", "dtd", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"))),
    Source("EuroSAT", "eurosat", (
        _archive("EuroSAT", "http://madm.dfki.de/files/sentinel/EuroSAT.zip", "eurosat"),
        _split("EuroSAT", "eurosat", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"))),
    Source("UCF101", "ucf101", (
        Step(_drive("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),
             ".downloads/UCF101/UCF-101-midframes.zip", "ucf101"),
        _split("UCF101", "ucf101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"))),
    Source("ImageNetV2", "imagenetv2", (
        _archive("ImageNetV2", "https://s3-us-west-2.amazonaws.com/imagenetv2public/"
                 "imagenetv2-matched-frequency.tar.gz", "imagenetv2"),
        Step(IMAGENET_CLASSNAMES, "imagenetv2/classnames.txt"))),
    Source("ImageNetSketch", "imagenet-sketch",
           (Step(IMAGENET_CLASSNAMES, "imagenet-sketch/classnames.txt"),),
           manual="ImageNet-Sketch is published through https://github.com/HaohanWang/"
                  "ImageNet-Sketch (Kaggle or Google Drive, by hand): extract it so that the "
                  "class folders (n01440764, ...) are {root}/imagenet-sketch/images/"),
    Source("ImageNetA", "imagenet-adversarial", (
        _archive("ImageNetA", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                 "imagenet-adversarial"),
        Step(IMAGENET_CLASSNAMES, "imagenet-adversarial/classnames.txt"))),
    Source("ImageNetR", "imagenet-rendition", (
        _archive("ImageNetR", "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                 "imagenet-rendition"),
        Step(IMAGENET_CLASSNAMES, "imagenet-rendition/classnames.txt"))),
)


def _elevater(task) -> Source:
    files = dict.fromkeys([task.labelmap, task.train_index, *task.train_archives,
                           task.test_index, *task.test_archives])
    steps = tuple(Step(f"{ELEVATER_STORE}/{task.folder}/{f}?{ELEVATER_TOKEN}",
                       f"{task.folder}/{f}") for f in files if f)
    return Source(task.name, task.folder, steps)


ELEVATER_SOURCES = tuple(_elevater(task) for task in ELEVATER_TASKS)
GROUPS = {"coop": [s.name for s in COOP_SOURCES], "elevater": [s.name for s in ELEVATER_SOURCES]}


def resolve(names: list[str]) -> list[Source]:
    """Sources for names, groups and config names, in the order given, each once."""
    by_name = {s.name: s for s in (*COOP_SOURCES, *ELEVATER_SOURCES)}
    configs = {b.config: b.name for b in ALL_BENCHMARKS if b.config not in TASKS_BY_NAME}
    chosen: dict[str, Source] = {}
    for name in names:
        for one in GROUPS.get(name.lower(), [name]):
            one = configs.get(one, one)
            if one not in by_name:
                raise UserError(f"unknown dataset {one!r}; choose from coop, elevater, "
                                f"{', '.join(by_name)} (or a config name: "
                                f"{', '.join(configs)})")
            chosen.setdefault(one, by_name[one])
    return list(chosen.values())


def _mirrored(step: Step, source: Source, mirror: str | None) -> str:
    if not mirror:
        return step.url
    return f"{mirror.rstrip('/')}/{source.name}/{PurePosixPath(step.file).name}"


def fetch_source(source: Source, root: Path, mirror: str | None = None, retries: int = 3,
                 keep_archives: bool = False, quiet: bool = True) -> None:
    """Every step of ``source`` that is not done yet (resumable, checked, unpacked)."""
    book = Records(root / ".downloads" / "records.json")
    for step in source.steps:
        target = root / step.file
        marker = target.with_name(target.name + ".unpacked")
        if step.unpack_to is not None and marker.is_file() and not target.is_file() \
                and (root / source.folder).is_dir():
            continue  # unpacked by an earlier run, archive since removed
        url = _mirrored(step, source, mirror)
        download(url, target, key=f"{source.name}/{PurePosixPath(step.file).name}",
                 records=book, what=source.name, retries=retries, quiet=quiet,
                 expected=Expected(step.size, step.sha256))
        if step.unpack_to is None:
            continue
        sha = sha256_file(target)
        if not (marker.is_file() and json.loads(marker.read_text()).get("sha256") == sha):
            if archive_kind(target) is None:
                raise UserError(f"{source.name}: {target} from {url} is not an archive; delete "
                                "it and download it by hand from that address")
            unpack(target, root / step.unpack_to, step.take)
            marker.write_text(json.dumps({"sha256": sha, "url": url}))
        if not keep_archives:
            target.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.fetch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="datasets, ELEVATER tasks, or the groups coop / elevater")
    parser.add_argument("--root", default=os.environ.get("DATA"),
                        help="the datasets folder (default: $DATA)")
    parser.add_argument("--mirror", default=os.environ.get("DATASETS_MIRROR"),
                        help="read every file from URL/<name>/<file name>")
    parser.add_argument("--retries", type=int, default=3, help="resumed retries per file")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded archives in ROOT/.downloads/")
    parser.add_argument("--no-check", action="store_true", help="skip datasets.check")
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("give --root (or set DATA) to the folder that holds the datasets")
    root = Path(args.root).expanduser().resolve()
    try:
        sources = resolve(args.names)
    except UserError as err:
        parser.error(str(err))
    failed = []
    for source in sources:
        try:
            fetch_source(source, root, args.mirror, args.retries, args.keep_archives,
                         quiet=not sys.stderr.isatty())  # progress bars on a terminal only
            print(f"{source.name}: fetched into {root / source.folder}", flush=True)
        except UserError as err:  # DownloadFailed, UnsafeArchive, ...: one line, go on
            print(f"error: {err}", file=sys.stderr, flush=True)
            failed.append(source.name)
        if source.manual:
            print(f"by hand: {source.manual.format(root=root)}", flush=True)
    status = 1 if failed else 0
    if not args.no_check:
        from datasets.check import main as check

        status = max(status, check([str(root), *(s.name for s in sources)]))
    return status


if __name__ == "__main__":
    sys.exit(main())
