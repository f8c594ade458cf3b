"""Name → class registries, as Dassl's ``dassl.utils.Registry``.

Trainer and dataset files register themselves with a decorator::

    @TRAINER_REGISTRY.register()
    class CoOp(TrainerX): ...

and ``build_trainer(cfg)`` / ``build_dataset(cfg)`` look the name up. An unknown name is an
error that lists every registered name and the closest ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any

from engine.errors import ConfigKeyError


class Registry:
    """A mapping from names to objects, filled by the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, obj: Any = None, name: str | None = None) -> Any:
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def add(item: Any) -> Any:
            key = name or item.__name__
            if key in self._entries and self._entries[key] is not item:
                raise KeyError(f"{self.kind} '{key}' is registered twice "
                               f"({self._entries[key]!r} and {item!r}); rename one of them")
            self._entries[key] = item
            return item

        if obj is None:
            return add
        return add(obj)

    def get(self, name: str) -> Any:
        if name not in self._entries:
            same_letters = [k for k in self._entries if k.lower() == str(name).lower()]
            close = same_letters or difflib.get_close_matches(name, list(self._entries), n=3,
                                                              cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            registered = ", ".join(sorted(self._entries)) or "(none)"
            raise ConfigKeyError(f"Unknown {self.kind} '{name}'.{hint} "
                                 f"Registered {self.kind}s: {registered}")
        return self._entries[name]

    def registered_names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


TRAINER_REGISTRY = Registry("trainer")
DATASET_REGISTRY = Registry("dataset")

BuildFn = Callable[..., Any]
