"""Polling for tests that wait on another process (a lock taken, an image started, a child gone)."""

from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, step: float = 0.02) -> bool:
    """True as soon as ``predicate()`` is true, False when ``timeout`` seconds pass first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False
