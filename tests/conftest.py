"""Shared fixtures: keep this small; areas add their own conftest.py."""

from __future__ import annotations

import logging
import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``-n 2`` in pyproject.toml), each worker computes on its share of
    the CPUs: two workers of two torch threads each on two cores would spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        torch.set_num_threads(max(1, (cpus or os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules holding a test marked slow run first (in their order; the others after, in
    theirs): on two workers a long module then starts early instead of ending the run alone."""
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    slow = {module(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: module(item) not in slow)


@pytest.fixture(autouse=True)
def _drop_engine_log_handlers():
    """Close the handlers engine.utils.setup_logger attached during a test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_engine_handler", False):
            root.removeHandler(handler)
            handler.close()
