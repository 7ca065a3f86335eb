# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and replacing the system configuration files the collection's modules edit."""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes


def read_text(path):
    """The file's text; bytes that are not UTF-8 survive a round trip (surrogateescape)."""
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", errors="surrogateescape")


def write_atomically(module, path, text):
    """Replace the file in one rename, keeping its owner, mode and SELinux context (atomic_move)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text, errors="surrogate_or_strict"))
    except Exception:
        os.unlink(tmp)
        raise
    module.atomic_move(tmp, path)
