"""Space of images: recorded cheaply when an image is made, measured by walking only on request.

A bank holds hundreds of vaults of dozens of images of millions of files: walking it costs a stat per
inode, so nothing that runs every night may do it. When an image is made, rsync has already counted
what matters and printed it (``--stats``; ``-v`` prints ``total size is N``); :func:`from_rsync_log`
reads those figures from the tail of the image's log and the summary records them (``Image-bytes``,
``Image-new-bytes``). :func:`disk_usage` walks a directory and is what ``dervish status --space`` uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from typing import Optional, Tuple

LOG_TAIL = 1 << 16  # --stats is printed last; retries append further attempts, the last one counts

_TOTAL_RE = re.compile(rb"^Total file size: ([\d,.']+) bytes$", re.M)
_TRANSFERRED_RE = re.compile(rb"^Total transferred file size: ([\d,.']+) bytes$", re.M)
_SHORT_TOTAL_RE = re.compile(rb"^total size is ([\d,.']+) ", re.M)


def _number(raw: bytes) -> int:
    return int(re.sub(rb"[,.']", b"", raw))


def from_rsync_log(log_path) -> Tuple[Optional[int], Optional[int]]:
    """``(bytes in the tree, bytes the run copied)`` from rsync's figures at the end of ``log_path``.

    The tree size is rsync's "Total file size" (or "total size is"), the copied bytes its "Total
    transferred file size": with ``--link-dest`` an unchanged file is a hard link and is not counted,
    so that is the space the image added. None for a figure the log does not hold (``UNSET stats``,
    rsync started with ``-h``, an unreadable log).
    """
    try:
        with open(os.fspath(log_path), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - LOG_TAIL))
            tail = fh.read()
    except OSError:
        return None, None
    totals = _TOTAL_RE.findall(tail) or _SHORT_TOTAL_RE.findall(tail)
    copied = _TRANSFERRED_RE.findall(tail)
    return (_number(totals[-1]) if totals else None, _number(copied[-1]) if copied else None)


def disk_usage(path) -> int:
    """Bytes allocated below ``path``; an inode reached through several hard links counts once."""
    seen = set()
    total = 0
    stack = [os.fspath(path)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    with contextlib.suppress(OSError):
        total += os.lstat(path).st_blocks * 512
    return total
