"""``dervish locate``: find versions of a file in a vault's indexes, like ``dirvish-locate``.

Good images only (Status ``success`` or ``warn...`` and a ``Backup-complete``), optional branch
filter, sorted by branch then newest first; each image's ``index``, ``index.gz`` or ``index.bz2`` is
read (images without an index are skipped). Directories and symlinks are ignored. Consecutive images
sharing an inode (= the same version) are grouped on one line.

The pattern is a Python regular expression searched in the **decoded last path component** of each
index line: the index keeps Dirvish's format (``find -ls``, where a space is ``\\ `` and every byte
outside printable ASCII an octal escape such as ``\\303\\274``), so the name is unescaped and decoded
as UTF-8 before matching (``ü`` finds ``\\303\\274``, ``a b`` finds ``a\\ b``). That is what
``dirvish-locate``'s ``pattern[^/]*$`` meant, without matching across ``/``: a pattern holding ``/``,
an empty pattern and an invalid expression are errors. Output paths stay as the index writes them
(escaped, one line each even for a name holding a newline), as dirvish-locate prints them.
"""

from __future__ import annotations

import bz2
import gzip
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .confgrammar import shorten
from .errors import DervishError
from .summary import read_summary

MAX_PATHS = 100
KILL_PATHS = 1000

# inode blocks perms nlink owner group size (devices: "major, minor") month day time|year path
_LINE_RE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+,\s*\d+|\S+)"
                      r"\s+(\S+\s+\S+\s+\S+)\s+(\S.*)$")


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


_ESCAPES = {b"\\": b"\\", b" ": b" ", b"n": b"\n", b"t": b"\t", b"r": b"\r", b"f": b"\f", b"v": b"\v",
            b"a": b"\a", b"b": b"\b", b'"': b'"'}
_ESCAPE_RE = re.compile(rb"\\([0-7]{3}|.)", re.S)


def _unescape(m: re.Match) -> bytes:
    code = m.group(1)
    return bytes([int(code, 8) & 0xFF]) if len(code) == 3 else _ESCAPES.get(code, code)


def decode_name(escaped: str) -> str:
    """A name as ``find -ls`` escaped it, back to text (UTF-8; other bytes as surrogates)."""
    if "\\" not in escaped:
        return escaped
    raw = _ESCAPE_RE.sub(_unescape, escaped.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def compile_pattern(pattern: str) -> re.Pattern:
    """The regular expression for a file name; ``DervishError`` for a pattern that cannot mean one."""
    if not pattern:
        raise DervishError("empty pattern: give a regular expression for the file name ('.' lists every file)")
    if "/" in pattern:
        raise DervishError(f"pattern {shorten(pattern)} contains '/': it is matched against the file name "
                           "(the last path component) only")
    with warnings.catch_warnings():  # "possible nested set" and the like: the expression is used as written
        warnings.simplefilter("ignore")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise DervishError(f"invalid pattern {shorten(pattern)}: {exc}") from None


def good_images(vault_dir, branch: Optional[str] = None, problems: Optional[List[str]] = None) -> List[GoodImage]:
    """Images of a vault whose summary says success/warning and Backup-complete, sorted for locate.

    A summary that cannot be read (e.g. a FIFO) is one line in ``problems``; the image is skipped.
    """
    found = []
    for entry in sorted(Path(vault_dir).iterdir()):
        if entry.name == "dirvish" or not entry.is_dir():
            continue
        try:
            info = read_summary(entry / "summary")
        except (OSError, DervishError) as exc:
            if problems is not None:
                problems.append(f"{exc}; image skipped")
            continue
        if info is None:
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


CHUNK = 1 << 22   # an index is read 4 MiB at a time (decompressed), not line by line


def _line_blocks(fh):
    """The index's lines (bytes, without newline), a list per chunk read."""
    rest = b""
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        chunk = rest + chunk
        cut = chunk.rfind(b"\n") + 1
        rest = chunk[cut:]
        if cut:
            yield chunk[:cut - 1].split(b"\n")
    if rest:
        yield [rest]


def _search_index(fh, rx, image_name: str, result: LocateResult) -> None:
    """Only a line whose text after its last ``/`` matches is parsed: for a file that text is its name, and
    a directory or symlink that passes is dropped by the parse (its type), so the result is the parse of
    every line's; the per-line parse was most of locate's time."""
    search = rx.search
    for block in _line_blocks(fh):
        for raw in block:
            slash = raw.rfind(b"/")
            if slash >= 0:
                tail = raw[slash + 1:].decode("utf-8", "surrogateescape")
                if not search(decode_name(tail) if "\\" in tail else tail):
                    continue
            line = raw.decode("utf-8", "surrogateescape")
            m = _LINE_RE.match(line)
            if not m or m.group(3)[:1] in ("d", "l"):
                continue
            path = m.group(9)
            if search(decode_name(path[path.rfind("/") + 1:])):
                result.matches.setdefault(path, []).append(Hit(image_name, m.group(1), m.group(8)))


def locate(vault_dir, pattern: str, branch: Optional[str] = None) -> LocateResult:
    rx = compile_pattern(pattern)
    result = LocateResult(pattern)
    for image in good_images(vault_dir, branch, result.problems):
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
