"""No test fails because the machine is slow: every wait in the suite is generous."""

from __future__ import annotations

import ast
from pathlib import Path

GENEROUS = 1800  # seconds: a wait only ends a test that truly hangs


def _short_waits(path: Path) -> list[str]:
    """``timeout=N`` arguments and ``seconds``/``timeout`` defaults under GENEROUS."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            values = [k.value for k in node.keywords if k.arg in ("timeout", "seconds")]
        elif isinstance(node, ast.FunctionDef):
            named = node.args.args[len(node.args.args) - len(node.args.defaults):]
            values = [d for a, d in zip(named, node.args.defaults, strict=True)
                      if a.arg in ("timeout", "seconds")]
        else:
            continue
        found += [f"{path.name}:{v.lineno}" for v in values if isinstance(v, ast.Constant)
                  and isinstance(v.value, (int, float)) and v.value < GENEROUS]
    return found


def test_no_short_waits_in_tests() -> None:
    root = Path(__file__).parent
    short = [hit for path in sorted(root.rglob("*.py")) for hit in _short_waits(path)]
    assert not short, f"waits shorter than {GENEROUS} s: {short}"
