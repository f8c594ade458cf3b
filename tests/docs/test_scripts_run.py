"""Every Python file under scripts/ runs as ``python scripts/X.py``: a command answers --help,
a module says which command to run instead."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p.name for p in (REPO / "scripts").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("name", FILES)
def test_runs_as_a_file(name):
    done = subprocess.run([sys.executable, f"scripts/{name}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode == 0:
        assert done.stdout.startswith("usage:"), done.stdout[:200]
    else:  # a module: one line naming itself and the command to run
        assert "Traceback" not in done.stderr, done.stderr
        line = done.stderr.strip()
        assert line.startswith(f"scripts/{name} is a module of") and "run python scripts/" in line
        command = line.split("run ")[-1].split(",")[0].split()
        assert (REPO / command[1]).is_file()


def _imports(name: str) -> set[str]:
    tree = ast.parse((REPO / "scripts" / name).read_text())
    return {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module}


def test_table_readers_do_not_import_each_other_in_a_cycle():
    assert "scripts.results" not in _imports("elevater_results.py")
    assert "scripts.results" not in _imports("tables.py")
    assert "scripts.elevater_results" not in _imports("tables.py")
