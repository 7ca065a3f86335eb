"""Test-wide set-up: make the repo importable as the collection ``dervish.backup``."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS_PATH = REPO_ROOT / "collections"

# `make venv` links collections/ansible_collections/dervish/backup -> repo root; tests import
# plugins as ansible_collections.dervish.backup.plugins.* exactly as ansible-core does.
if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_PATH))
