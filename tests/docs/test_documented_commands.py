"""The commands README.md and RUN.md present as runnable on demo data still run.

A command block is runnable when the line before its opening fence (blank lines aside) is
``<!-- runnable: demo -->`` (CONTRIBUTING.md, "Documentation"). The blocks of one file run in
order, in one folder that holds the repository's files (linked) and nothing else, so a block
can use what an earlier block of its file wrote (the MVLPT chain's source prompts in the
ELEVATER demo). Each block runs as written with ``bash -e``; the test prints its wall time.
A fenced block marked ``<!-- output: demo -->`` is what the runnable block before it prints:
its lines must appear, in order and one after another, in that block's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable: demo -->"
OUTPUT_MARKER = "<!-- output: demo -->"
DOCS = ("README.md", "RUN.md")
SCRATCH = {".git", "output", "data", "demo_data", ".pytest_cache", ".ruff_cache"}
CLEAN_ENV = ("DATA", "OUTPUT", "EXTRA_OPTS", "MODEL_DIR", "SEEDS", "TASKS", "CFG", "LOADEP",
             "FORCE", "DRY_RUN", "TRAINER", "OUT", "CUDA_VISIBLE_DEVICES")


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks that follow the marker."""
    pattern = re.compile(re.escape(MARKER) + r"\s*\n(?:\s*\n)*```(?:bash|sh)?\n(.*?)\n```",
                         re.S)
    return pattern.findall(text)


def documented_outputs(text: str) -> dict[int, list[str]]:
    """The lines of each output block, keyed by the index of the runnable block before it."""
    fence = r"\s*\n(?:\s*\n)*```[a-z]*\n(.*?)\n```"
    marks = sorted([(m.start(), "run", "") for m in re.finditer(re.escape(MARKER) + fence, text,
                                                                re.S)]
                   + [(m.start(), "out", m.group(1))
                      for m in re.finditer(re.escape(OUTPUT_MARKER) + fence, text, re.S)])
    outputs: dict[int, list[str]] = {}
    runs = -1
    for _, kind, body in marks:
        if kind == "run":
            runs += 1
        else:
            assert runs >= 0 and runs not in outputs, "an output block follows no runnable block"
            outputs[runs] = [line.rstrip() for line in body.splitlines()]
    return outputs


def printed(expected: list[str], output: str) -> bool:
    lines = [line.rstrip() for line in output.splitlines()]
    return any(lines[i:i + len(expected)] == expected for i in range(len(lines)))


def test_the_marker_finds_blocks() -> None:
    text = (f"a\n{MARKER}\n\n```bash\necho 1\necho 2\n```\n```bash\nnot this\n```\n"
            f"{OUTPUT_MARKER}\n```\n1\n2\n```\n")
    assert runnable_blocks(text) == ["echo 1\necho 2"]
    assert documented_outputs(text) == {0: ["1", "2"]}
    assert printed(["1", "2"], "x\n1\n2\n") and not printed(["1", "2"], "1\nx\n2\n")


def workspace(folder: Path) -> Path:
    for entry in REPO.iterdir():
        if entry.name not in SCRATCH:
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_runnable_blocks_run(doc: str, tmp_path: Path) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    blocks, outputs = runnable_blocks(text), documented_outputs(text)
    assert blocks, f"{doc} marks no runnable block"
    cwd = workspace(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    for i, block in enumerate(blocks, 1):
        start = time.monotonic()
        done = subprocess.run(["bash", "-e", "-c", block], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        took = time.monotonic() - start
        print(f"{doc} block {i}: {took:.0f} s")
        assert done.returncode == 0, (f"{doc}, runnable block {i} failed (exit status "
                                      f"{done.returncode}):\n{block}\n--- output (end):\n"
                                      f"{done.stdout[-4000:]}")
        if i - 1 in outputs:
            assert printed(outputs[i - 1], done.stdout), (
                f"{doc}, runnable block {i} no longer prints what {doc} shows:\n"
                + "\n".join(outputs[i - 1]) + f"\n--- it printed (end):\n{done.stdout[-4000:]}")
