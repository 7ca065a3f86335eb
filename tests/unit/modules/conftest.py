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


@pytest.fixture
def wrapper(tmp_path):
    """A stand-in dervish-backup: `--holds` prints holds.txt (holds-after.txt once it exists after a call);
    other calls are appended to calls.txt and answer with reply.out / reply.err / reply.rc."""
    script = tmp_path / "dervish-backup"
    script.write_text(f"""#!/bin/bash
d={tmp_path}
if [ "$1" = --holds ]; then
  if [ -e "$d/called" ] && [ -e "$d/holds-after.txt" ]; then cat "$d/holds-after.txt"; else cat "$d/holds.txt"; fi
  exit 0
fi
echo "$*" >> "$d/calls.txt"; touch "$d/called"
cat "$d/reply.out" 2>/dev/null; cat "$d/reply.err" >&2 2>/dev/null; exit "$(cat "$d/reply.rc" 2>/dev/null || echo 0)"
""")
    script.chmod(0o755)
    return tmp_path
