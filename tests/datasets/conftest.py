"""Fixtures of the dataset tests: a fresh data root per test, and the demo dataset once."""

from __future__ import annotations

import pytest


@pytest.fixture
def root(tmp_path):
    return tmp_path / "data"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A data root holding the generated demo dataset (read-only for the tests: copy it to
    change it)."""
    from datasets.demo import generate

    root = tmp_path_factory.mktemp("demo_data")
    generate(root)
    return root
