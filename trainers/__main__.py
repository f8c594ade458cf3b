"""``python -m trainers --list``: every registered method and part, with its config node and
keys (their defaults), and the official keys that set them."""

from __future__ import annotations

import argparse
import sys

import datasets  # noqa: F401  (dataset nodes)
import trainers  # noqa: F401  (registration)
from engine.config import aliases, get_cfg_default
from trainers.method import METHOD_REGISTRY
from trainers.parts import listing


def lines() -> list[str]:
    cfg = get_cfg_default()
    out = []
    for name in METHOD_REGISTRY:
        m = METHOD_REGISTRY.get(name)
        parts = [f"learner {m.learner}", f"terms {', '.join(m.terms)}"]
        parts += [f"{kind} {', '.join(v) if isinstance(v, tuple) else v}" for kind, v in (
            ("step hooks", m.step_hooks), ("epoch hooks", m.epoch_hooks), ("head", m.head))
            if v]
        out.append(f"{'method':<10} {name:<24} {'TRAINER.' + m.node:<22} {'; '.join(parts)}; "
                   f"needs {', '.join(m.needs)}; checkpoints in {m.model_name}/")
    out += list(listing(cfg))
    out += [f"{'alias':<10} {official} -> {key}" for official, key in aliases().items()]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers", description=__doc__)
    parser.add_argument("--list", action="store_true", help="list methods, parts and keys")
    args = parser.parse_args(argv)
    if not args.list:
        parser.print_help()
        return 2
    print("\n".join(lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
