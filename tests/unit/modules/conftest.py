"""Modules run here as on a managed host, whatever controller code other unit tests imported."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def as_on_a_managed_host(monkeypatch):
    # ansible-core 2.19 flags the process as the controller once its controller side is imported
    # (e.g. by an action plugin's test); a module's warn() then prints instead of returning warnings.
    try:
        from ansible.module_utils import _internal
    except ImportError:  # older ansible-core has no such flag
        return
    monkeypatch.setattr(_internal, "is_controller", False, raising=False)
