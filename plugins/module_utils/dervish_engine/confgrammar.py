"""Tokenizer/parser for the dirvish.conf(5) file format, aware of file and line.

The grammar (Dirvish 1.2.1 ``loadconfig``, made strict):

* ``key: value``               a scalar (split at the first ``:``; surrounding blanks stripped)
* ``key:`` + indented lines     a list; every following line that starts with whitespace is an item
* ``SET a b`` / ``UNSET a b``   set / unset booleans (no colon)
* ``RESET key``                 empty a list; indented lines that follow refill it
* ``#`` starts a comment anywhere; ``\\#`` is a literal ``#`` (as in Dirvish 1.3.1)
* blank lines are ignored

Bad bytes are refused where every file is read: :func:`read_text_file` opens only regular files
(a FIFO would block the reader forever, a device is never a configuration), and in strict mode a line
holding a NUL byte (no path or option can contain one) or longer than ``MAX_LINE`` characters is a
``ConfigError``. Messages quote offending text through :func:`shorten`, so junk is never copied whole.

The parser knows nothing about option names: :mod:`config` gives meaning to the statements.
In strict mode (configuration files) a line that fits none of the forms is a ``ConfigError``
naming ``file:line``; in tolerant mode (reading image ``summary`` files, which also hold lines such
as ``post-client failed (3)``) such lines come back as ``TEXT`` statements.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .errors import ConfigError

SCALAR = "scalar"
LIST = "list"
SET = "set"
UNSET = "unset"
RESET = "reset"
TEXT = "text"

MAX_LINE = 16384  # characters per configuration line; a path is at most 4096 bytes
QUOTE_LIMIT = 60

_KEY_RE = re.compile(r"^([^\s:]+):(.*)$")
_DIRECTIVE_RE = re.compile(r"^(SET|UNSET|RESET)(?:\s+(.*))?$")


@dataclass
class Statement:
    """One logical statement of a configuration file.

    ``kind`` is one of SCALAR, LIST, SET, UNSET, RESET, TEXT. ``key`` is the option name (empty
    for SET/UNSET/TEXT). ``value`` holds the scalar value (or the raw text of a TEXT line),
    ``items`` the list items or the SET/UNSET names, ``item_lines`` the line number of each item.
    """

    kind: str
    key: str
    value: str = ""
    items: List[str] = field(default_factory=list)
    path: Optional[str] = None
    line: int = 0
    item_lines: List[int] = field(default_factory=list)

    def where(self) -> str:
        return "{}:{}".format(self.path or "<string>", self.line)


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of ``text`` for a message, cut to ``limit`` characters with the full length noted."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_text_file(path, what: str = "file", missing_ok: bool = False) -> Optional[str]:
    """The text of a regular file (UTF-8, undecodable bytes kept as surrogates).

    ``ConfigError`` naming the file when it cannot be read or is not a regular file: the open does
    not block (O_NONBLOCK) and the type is checked on the open descriptor, so a FIFO or device put
    where a summary, lock or configuration belongs is refused instead of hanging the reader.
    ``missing_ok``: None when the file does not exist.
    """
    p = Path(path)
    try:
        fd = os.open(str(p), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError) as exc:
        if missing_ok:
            return None
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", p) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", p) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
            raise ConfigError(f"not a regular file ({kind}); expected a text {what}", p)
        chunks = []
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", p) from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def strip_comment(line: str) -> str:
    """Remove a ``#`` comment; ``\\#`` stands for a literal ``#``."""
    if "#" not in line:
        return line
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == "#":
            out.append("#")
            i += 2
            continue
        if ch == "#":
            break
        out.append(ch)
        i += 1
    return "".join(out)


def check_line(line: str, path=None, lineno: Optional[int] = None) -> None:
    """``ConfigError`` (file:line) for a line no configuration can hold: a NUL byte (no path, pattern
    or option contains one) or more than ``MAX_LINE`` characters."""
    if "\0" in line:
        raise ConfigError(f"line {shorten(line.strip())} contains a NUL byte; expected a text line", path, lineno)
    if len(line) > MAX_LINE:
        raise ConfigError(f"line is {len(line)} characters long (at most {MAX_LINE}); expected a text line",
                          path, lineno)


def parse_text(text: str, path=None, strict: bool = True, comments: bool = True) -> List[Statement]:
    """Parse configuration text into statements.

    ``path`` is only used in messages. ``strict=False`` returns unparsable lines as TEXT
    statements instead of raising. ``comments=False`` keeps ``#`` inside lines (summary files are
    written without escaping); whole-line comments are still skipped. Strict mode refuses a line
    with a NUL byte or longer than ``MAX_LINE``; tolerant mode returns a line with a NUL as TEXT.
    """
    spath = str(path) if path is not None else None
    statements: List[Statement] = []
    current: Optional[Statement] = None  # the list statement indented lines belong to
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw) if comments else "" if raw.lstrip().startswith("#") else raw
        line = line.rstrip()
        if not line.strip():
            continue
        if strict:
            check_line(line, spath, lineno)
        elif "\0" in line:
            current = None
            statements.append(Statement(TEXT, "", line.strip(), path=spath, line=lineno))
            continue
        if line[0] in " \t":
            if current is not None:
                current.items.append(line.strip())
                current.item_lines.append(lineno)
                continue
            if strict:
                raise ConfigError(
                    f"indented line {shorten(line.strip())} does not follow a list key ('key:' on its own line)",
                    spath,
                    lineno,
                )
            statements.append(Statement(TEXT, "", line.strip(), path=spath, line=lineno))
            continue
        current = None
        m = _DIRECTIVE_RE.match(line)
        if m:
            word, rest = m.group(1), (m.group(2) or "").strip()
            names = rest.split()
            if not names:
                if strict:
                    raise ConfigError(f"{word} needs at least one name", spath, lineno)
                statements.append(Statement(TEXT, "", line, path=spath, line=lineno))
                continue
            if word == "RESET":
                if len(names) != 1:
                    if strict:
                        raise ConfigError("RESET takes exactly one list name", spath, lineno)
                    statements.append(Statement(TEXT, "", line, path=spath, line=lineno))
                    continue
                statements.append(Statement(RESET, names[0], path=spath, line=lineno))
                # indented lines after RESET refill the list (as in Dirvish)
                current = Statement(LIST, names[0], path=spath, line=lineno)
                statements.append(current)
                continue
            kind = SET if word == "SET" else UNSET
            statements.append(Statement(kind, "", rest, list(names), spath, lineno, [lineno] * len(names)))
            continue
        m = _KEY_RE.match(line)
        if m:
            key, value = m.group(1), m.group(2).strip()
            if value:
                statements.append(Statement(SCALAR, key, value, path=spath, line=lineno))
            else:
                current = Statement(LIST, key, path=spath, line=lineno)
                statements.append(current)
            continue
        if strict:
            raise ConfigError(
                f"cannot parse {shorten(line.strip())} "
                "(expected 'key: value', 'key:' with indented lines, SET, UNSET or RESET)",
                spath,
                lineno,
            )
        statements.append(Statement(TEXT, "", line.strip(), path=spath, line=lineno))
    return statements


def parse_file(path, strict: bool = True) -> List[Statement]:
    """Read and parse one file; ``ConfigError`` if it cannot be read."""
    p = Path(path)
    return parse_text(read_text_file(p, "config file"), p, strict=strict)


def escape_value(value: str) -> str:
    """Escape ``#`` so that :func:`parse_text` returns ``value`` unchanged."""
    return value.replace("#", "\\#")
