"""The catalogue of released checkpoints (``catalogue.yaml``), read into :class:`Entry` rows.

``ZOO_CATALOGUE`` names more catalogue files (separated by ``os.pathsep``) whose entries are
added to the built-in ones, or replace those of the same name: a lab's own releases, or a test's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine.errors import UserError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILTIN = HERE / "catalogue.yaml"
EVALUATED = ("base2new", "xd", "dg", "few_shot")
PROTOCOLS = (*EVALUATED, "mvlpt_source")
SOURCE_KINDS = ("drive_folder", "drive_file", "url", "manual")


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Entry:
    """One release: what it is, where it comes from, how it is evaluated."""

    name: str
    method: str
    trainer: str
    protocols: tuple[str, ...]
    backbone: str
    config: str
    load_epoch: int | None
    shots: tuple[int, ...]
    seeds: tuple[int, ...]
    datasets: tuple[str, ...]
    source_kind: str
    source: str
    layout: str | None
    published: dict | None
    licence: str | None
    repository: str
    origin: str  # the official files the facts were read from
    notes: str = ""
    aliases: tuple[str, ...] = ()
    config_dir: str | None = None
    trained_on: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return REPO / "configs" / "trainers" / (self.config_dir or self.trainer) / \
            f"{self.config}.yaml"

    @property
    def address(self) -> str:
        """The official address, as a browser opens it."""
        if self.source_kind == "drive_folder":
            return f"https://drive.google.com/drive/folders/{self.source}"
        if self.source_kind == "drive_file":
            return f"https://drive.google.com/file/d/{self.source}/view"
        return self.source

    def evaluable(self) -> str | None:
        """None when ``eval`` can run this entry, else why not."""
        if not set(self.protocols) & set(EVALUATED):
            return (f"{self.name} holds {', '.join(self.protocols)} prompts, which are not "
                    "evaluated by themselves")
        if not self.config_file.is_file():
            return (f"{self.name} was trained with {self.config_file.relative_to(REPO)}, which "
                    "is not among this repository's configs; add it to evaluate this entry")
        return None


def _entry(name: str, raw: dict, where: Path) -> Entry:
    def need(key: str):
        if key not in raw:
            raise UserError(f"{where}: entry {name!r} has no {key!r}")
        return raw[key]

    source = need("source")
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in SOURCE_KINDS:
        raise UserError(f"{where}: entry {name!r}: source must be one of "
                        f"{', '.join(SOURCE_KINDS)} with its value, got {source!r}")
    kind, value = next(iter(source.items()))
    protocols = tuple(_as_list(need("protocols")))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise UserError(f"{where}: entry {name!r}: unknown protocols {unknown}; known: "
                        f"{', '.join(PROTOCOLS)}")
    known = {"method", "trainer", "protocols", "backbone", "config", "load_epoch", "shots",
             "seeds", "datasets", "source", "layout", "published", "licence", "repository",
             "from", "notes", "aliases", "config_dir", "trained_on"}
    return Entry(
        name=name, method=str(need("method")), trainer=str(need("trainer")), protocols=protocols,
        backbone=str(need("backbone")), config=str(need("config")),
        load_epoch=need("load_epoch"), shots=tuple(_as_list(need("shots"))),
        seeds=tuple(_as_list(need("seeds"))), datasets=tuple(_as_list(need("datasets"))),
        source_kind=kind, source=str(value), layout=need("layout"), published=need("published"),
        licence=raw.get("licence"), repository=str(need("repository")), origin=str(need("from")),
        notes=str(raw.get("notes") or "").strip(), aliases=tuple(_as_list(raw.get("aliases"))),
        config_dir=raw.get("config_dir"), trained_on=raw.get("trained_on"),
        extra={k: v for k, v in raw.items() if k not in known})


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read the catalogue {path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise UserError(f"{path}: a catalogue is a YAML mapping with an 'entries' mapping")
    return data


def load(extra: str | None = None) -> dict[str, Entry]:
    """Every entry by name: the built-in catalogue, then the files of ``ZOO_CATALOGUE``."""
    extra = os.environ.get("ZOO_CATALOGUE", "") if extra is None else extra
    entries: dict[str, Entry] = {}
    for path in [BUILTIN, *(Path(p) for p in extra.split(os.pathsep) if p)]:
        for name, raw in _read(path)["entries"].items():
            entries[str(name)] = _entry(str(name), raw or {}, path)
    return entries


def unreleased() -> dict[str, str]:
    """Hosted methods without a release, and where that was read."""
    return dict(_read(BUILTIN).get("unreleased") or {})


def find(name: str, entries: dict[str, Entry] | None = None) -> Entry:
    """The entry called ``name`` (or one of its aliases), or a one-line error."""
    entries = load() if entries is None else entries
    if name in entries:
        return entries[name]
    for entry in entries.values():
        if name in entry.aliases:
            return entry
    import difflib

    close = difflib.get_close_matches(name, list(entries), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"no released model named {name!r} in the catalogue{hint} "
                    "(python -m scripts.zoo list shows them all)")


def published_base2new(method: str) -> tuple[float, float, float] | None:
    """Base / Novel / HM as published for ``zoo:<entry>`` (the trainer level of a release's
    run folders), or None."""
    if not method.startswith("zoo:"):
        return None
    try:
        published = find(method[4:]).published or {}
    except UserError:
        return None
    values = [published.get(k) for k in ("base", "novel", "hm")]
    return None if None in values else tuple(float(v) for v in values)
