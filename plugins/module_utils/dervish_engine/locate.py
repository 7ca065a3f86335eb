"""``dervish locate``: find versions of a file in a vault's indexes, like ``dirvish-locate``.

Good images only (Status ``success`` or ``warn...`` and a ``Backup-complete``), optional branch
filter, sorted by branch then newest first; each image's ``index``, ``index.gz`` or ``index.bz2`` is
read (images without an index are skipped). The pattern is a regular expression on the last path
component: ``[^/]*$`` is appended unless it ends in ``$``. Directories and symlinks are ignored.
Consecutive images sharing an inode (= the same version) are grouped on one line.
"""

from __future__ import annotations

import bz2
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .errors import DervishError
from .summary import parse_summary

MAX_PATHS = 100
KILL_PATHS = 1000

_LINE_RE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+\s+\S+\s+\S+)\s+(\S.*)$")


@dataclass(frozen=True)
class GoodImage:
    name: str
    path: Path
    branch: str
    created: str


@dataclass(frozen=True)
class Hit:
    image: str
    inode: str
    mtime: str


@dataclass
class LocateResult:
    pattern: str
    image_count: int = 0
    matches: Dict[str, List[Hit]] = field(default_factory=dict)
    interrupted: bool = False
    problems: List[str] = field(default_factory=list)  # indexes that could not be read, one line each


def full_pattern(pattern: str) -> str:
    return pattern if pattern.endswith("$") else pattern + "[^/]*$"


def good_images(vault_dir, branch: Optional[str] = None) -> List[GoodImage]:
    """Images of a vault whose summary says success/warning and Backup-complete, sorted for locate."""
    found = []
    for entry in sorted(Path(vault_dir).iterdir()):
        if entry.name == "dirvish" or not entry.is_dir():
            continue
        try:
            text = (entry / "summary").read_text(encoding="utf-8", errors="surrogateescape")
            info = parse_summary(text)
        except (OSError, DervishError):
            continue
        status = info.status or ""
        if not (status == "success" or status.startswith("warn")) or not info.backup_complete:
            continue
        if branch and info.branch != branch:
            continue
        found.append(GoodImage(info.image or entry.name, entry, info.branch or "", info.backup_complete))
    found.sort(key=lambda im: (im.created, im.name), reverse=True)
    found.sort(key=lambda im: im.branch)
    return found


def _open_index(image_dir: Path):
    for name, opener in (("index", open), ("index.gz", gzip.open), ("index.bz2", bz2.open)):
        path = image_dir / name
        if path.is_file():
            return opener(str(path), "rb")
    return None


def _search_index(fh, rx, image_name: str, result: LocateResult) -> None:
    for raw in fh:
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        m = _LINE_RE.match(line)
        if not m or m.group(3)[:1] in ("d", "l"):
            continue
        path = m.group(9)
        if rx.search(path):
            result.matches.setdefault(path, []).append(Hit(image_name, m.group(1), m.group(8)))


def locate(vault_dir, pattern: str, branch: Optional[str] = None) -> LocateResult:
    try:
        rx = re.compile(full_pattern(pattern))
    except re.error as exc:
        raise DervishError(f"invalid pattern {pattern!r}: {exc}") from exc
    result = LocateResult(pattern)
    for image in good_images(vault_dir, branch):
        fh = _open_index(image.path)
        if fh is None:
            continue
        result.image_count += 1
        try:
            with fh:
                _search_index(fh, rx, image.name, result)
        except (OSError, EOFError) as exc:  # a damaged index.gz: say which, search the other images
            result.problems.append(f"index of image {image.path} cannot be read ({exc}); image skipped")
        if len(result.matches) >= KILL_PATHS:
            result.interrupted = True
            break
    return result


def render(result: LocateResult) -> str:
    """Text output identical in layout to dirvish-locate."""
    out = []
    count = len(result.matches)
    if result.interrupted:
        out.append("dervish locate: too many paths match pattern, interrupting search\n")
    out.append(f"{count} matches in {result.image_count} images\n")
    if count >= MAX_PATHS:
        out.append(f"Pattern '{result.pattern}' too vague, listing paths only.\n")
    for path in sorted(result.matches):
        out.append(path)
        if count >= MAX_PATHS:
            out.append("\n")
            continue
        last = None
        size = 0
        for hit in result.matches[path]:
            if hit.inode != last:
                size = 5 + len(hit.mtime) + len(hit.image)
                out.append(f"\n    {hit.mtime} {hit.image}")
            else:
                size += len(hit.image) + 2
                if size > 78:
                    size = 5 + len(hit.mtime) + len(hit.image)
                    out.append("\n" + " " * (5 + len(hit.mtime)) + hit.image)
                else:
                    out.append(f", {hit.image}")
            last = hit.inode
        out.append("\n\n")
    return "".join(out)
