"""Fixtures for the engine unit tests."""

from __future__ import annotations

import os
import time

import pytest


@pytest.fixture
def berlin_tz():
    """Run the test with TZ=Europe/Berlin (DST changes on the last Sundays of March and October)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def write(tmp_path):
    """write('rel/path', text) -> Path: create a file (and its directories) under tmp_path."""

    def _write(rel, text=""):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write
