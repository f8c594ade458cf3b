"""Shared fixtures: keep this small; areas add their own conftest.py."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _drop_engine_log_handlers():
    """Close the handlers engine.utils.setup_logger attached during a test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_engine_handler", False):
            root.removeHandler(handler)
            handler.close()
