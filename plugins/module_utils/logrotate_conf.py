# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse and edit logrotate configuration files (logrotate 3.x syntax), stdlib only.

The parser is line based, as logrotate's own is:

* ``#`` starts a comment only at the beginning of a line (logrotate rejects trailing comments);
* outside a block, a line starting with a letter is a directive (``weekly``, ``include /etc/logrotate.d``);
  any other non-blank line is a list of log paths/globs (possibly spread over several lines) that
  ends with ``{`` and opens a block; ``}`` closes it;
* ``postrotate``/``prerotate``/``firstaction``/``lastaction``/``preremove`` open a shell script that
  runs up to a line starting with ``endscript``; script lines are never read as directives.

Editing never reformats: every line that is not inserted, replaced or removed stays byte-for-byte.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

MARKER = "# dateext: managed by dervish (dervish.backup.logrotate_dateext)"

SCRIPT_DIRECTIVES = frozenset({"postrotate", "prerotate", "firstaction", "lastaction", "preremove"})

# logrotate(8), "dateformat": only these strftime(3) specifiers are allowed.
DATEFORMAT_SPECIFIERS = "YmdHMSVs"

# logrotate 3.21's built-in taboo list: files in an included directory matching "*<ext>" are skipped.
TABOO_PATTERNS = (
    "*,v", "*.bak", "*.cfsaved", "*.disabled", "*.dpkg-bak", "*.dpkg-del", "*.dpkg-dist", "*.dpkg-new",
    "*.dpkg-old", "*.dpkg-tmp", "*.rhn-cfg-tmp-*", "*.rpmnew", "*.rpmorig", "*.rpmsave", "*.swp",
    "*.ucf-dist", "*.ucf-new", "*.ucf-old", "*~",
)

# Line kinds
BLANK = "blank"
COMMENT = "comment"
DIRECTIVE = "directive"
PATHS = "paths"
BLOCK_END = "block_end"
SCRIPT = "script"
SCRIPT_END = "script_end"


class LogrotateConfError(ValueError):
    """The text cannot be understood as logrotate configuration."""


@dataclass(frozen=True)
class Line:
    """One physical line of a logrotate configuration, classified."""

    number: int  # 1-based
    text: str  # without the line terminator
    kind: str
    key: str = ""  # directive keyword (DIRECTIVE, script start) or "" otherwise
    value: str = ""  # the rest of a directive line, stripped
    block: Optional[int] = None  # index into ParsedConfig.blocks, None at global scope

    @property
    def is_global(self) -> bool:
        return self.block is None


@dataclass
class Block:
    """A ``paths { ... }`` section."""

    patterns: List[str]
    start: int  # index of its first PATHS line
    end: Optional[int] = None  # index of its ``}`` line; None when the file ends first

    @property
    def label(self) -> str:
        return " ".join(self.patterns)


@dataclass
class ParsedConfig:
    lines: List[Line]
    blocks: List[Block]

    def first_boundary(self) -> int:
        """Index of the first ``include`` or block start: global directives before it affect everything."""
        for idx, line in enumerate(self.lines):
            if line.kind == PATHS or (line.is_global and line.kind == DIRECTIVE and line.key == "include"):
                return idx
        return len(self.lines)

    def global_directives(self, key: str) -> List[int]:
        return [i for i, ln in enumerate(self.lines) if ln.is_global and ln.kind == DIRECTIVE and ln.key == key]

    def includes(self) -> List[Line]:
        return [ln for ln in self.lines if ln.kind == DIRECTIVE and ln.key == "include"]


@dataclass(frozen=True)
class Override:
    """A ``nodateext`` that switches dateext off again for some logs."""

    file: str
    line: int
    block: Optional[str]  # the block's paths, or None for a global nodateext in an included file

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "block": self.block}


@dataclass
class EditResult:
    text: str
    changed: bool
    messages: List[str] = field(default_factory=list)


def _split_paths(text: str) -> List[str]:
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:
        return text.split()


def parse(text: str) -> ParsedConfig:
    """Classify every line of ``text``.

    Raises LogrotateConfError for a script without ``endscript`` and for ``}`` outside a block; logrotate
    also reports those as errors. A block still open at the end of the file is tolerated, as logrotate does.
    """
    lines: List[Line] = []
    blocks: List[Block] = []
    current: Optional[int] = None  # open block index
    pending: Optional[int] = None  # block whose paths are being collected (no "{" yet)
    script_start: Optional[Line] = None

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        scope = current if current is not None else pending
        if script_start is not None:
            if re.match(r"endscript\b", stripped):
                lines.append(Line(number, raw, SCRIPT_END, key="endscript", block=scope))
                script_start = None
            else:
                lines.append(Line(number, raw, SCRIPT, block=scope))
            continue
        if not stripped:
            lines.append(Line(number, raw, BLANK, block=scope))
            continue
        if stripped.startswith("#"):
            lines.append(Line(number, raw, COMMENT, block=scope))
            continue
        if current is None and pending is None and stripped[0].isalpha():
            key = stripped.split(None, 1)[0]
            value = stripped[len(key):].strip()
            line = Line(number, raw, DIRECTIVE, key=key, value=value)
            lines.append(line)
            if key in SCRIPT_DIRECTIVES:
                script_start = line
            continue
        if current is None:
            # A path list, possibly continued on following lines, ending with "{".
            if stripped.startswith("}"):
                raise LogrotateConfError(f"line {number}: '}}' without an open block")
            head, brace, _tail = stripped.partition("{")
            if pending is None:
                blocks.append(Block(patterns=[], start=len(lines)))
                pending = len(blocks) - 1
            blocks[pending].patterns.extend(_split_paths(head))
            lines.append(Line(number, raw, PATHS, value=head.strip(), block=pending))
            if brace:
                current, pending = pending, None
            continue
        # Inside a block.
        if stripped.startswith("}"):
            blocks[current].end = len(lines)
            lines.append(Line(number, raw, BLOCK_END, block=current))
            current = None
            continue
        key = stripped.split(None, 1)[0]
        value = stripped[len(key):].strip()
        line = Line(number, raw, DIRECTIVE, key=key, value=value, block=current)
        lines.append(line)
        if key in SCRIPT_DIRECTIVES:
            script_start = line

    if script_start is not None:
        raise LogrotateConfError(f"line {script_start.number}: '{script_start.key}' without 'endscript'")
    return ParsedConfig(lines=lines, blocks=blocks)


def validate_dateformat(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` is a dateformat logrotate accepts and that makes sane file names."""
    if not fmt:
        raise ValueError("dateformat must not be empty")
    if any(ch.isspace() for ch in fmt):
        raise ValueError(f"dateformat {fmt!r} must not contain whitespace")
    if "/" in fmt:
        raise ValueError(f"dateformat {fmt!r} must not contain '/': it is appended to the rotated file name")
    idx = 0
    while idx < len(fmt):
        if fmt[idx] == "%":
            spec = fmt[idx + 1:idx + 2]
            if not spec or spec not in DATEFORMAT_SPECIFIERS:
                shown = "%" + spec if spec else "a trailing '%'"
                allowed = " ".join("%" + ch for ch in DATEFORMAT_SPECIFIERS)
                raise ValueError(
                    f"dateformat {fmt!r} uses {shown}; logrotate only allows the specifiers {allowed}"
                )
            idx += 2
        else:
            idx += 1


def dateformat_is_sortable(fmt: str) -> bool:
    """True when the date parts appear from most to least significant (logrotate sorts names lexically)."""
    order = "YmdHMS"
    seen = [ch for ch in re.findall(r"%(.)", fmt) if ch in order]
    if "s" in re.findall(r"%(.)", fmt):
        return True
    return seen == sorted(seen, key=order.index)


def _split_keep_ends(text: str) -> List[str]:
    return text.splitlines(keepends=True)


def _line_ending(physical: List[str]) -> str:
    for item in physical:
        if item.endswith("\r\n"):
            return "\r\n"
        if item.endswith("\n"):
            return "\n"
    return "\n"


def _indent_of(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def _managed_group(parsed: ParsedConfig, marker_idx: int) -> List[int]:
    """Indexes of the global dateext/dateformat lines directly after the marker at ``marker_idx``."""
    out = []
    idx = marker_idx + 1
    while idx < len(parsed.lines):
        ln = parsed.lines[idx]
        if ln.is_global and ln.kind == DIRECTIVE and ln.key in ("dateext", "dateformat"):
            out.append(idx)
            idx += 1
            continue
        break
    return out


def _is_marker(line: Line) -> bool:
    return line.is_global and line.kind == COMMENT and line.text.strip() == MARKER


def _insertion_point(parsed: ParsedConfig, boundary: int) -> int:
    """Insert before the comment lines that introduce the first include/block (no blank line between)."""
    idx = boundary
    while idx > 0 and parsed.lines[idx - 1].kind == COMMENT and not _is_marker(parsed.lines[idx - 1]):
        idx -= 1
    return idx


def enable_dateext(text: str, dateformat: Optional[str] = None) -> EditResult:
    """Make ``dateext`` (and optionally ``dateformat``) global defaults that apply to every include/block."""
    if dateformat is not None:
        validate_dateformat(dateformat)
    parsed = parse(text)
    physical = _split_keep_ends(text)
    eol = _line_ending(physical)
    messages: List[str] = []
    # Work on a list of (text, ending) so inserted lines get the file's own line ending.
    items: List[List[str]] = []
    for raw in physical:
        body = raw.rstrip("\r\n")
        items.append([body, raw[len(body):]])
    changed = False

    # 1. A global nodateext anywhere switches dateext off for everything after it: turn it into dateext.
    replaced: List[int] = []
    for idx in parsed.global_directives("nodateext"):
        line = parsed.lines[idx]
        items[idx][0] = _indent_of(line.text) + "dateext"
        replaced.append(idx)
        messages.append(f"replaced global 'nodateext' at line {line.number} with 'dateext'")
        changed = True

    boundary = parsed.first_boundary()
    head_dateext = [i for i in parsed.global_directives("dateext") if i < boundary]
    head_dateext += [i for i in replaced if i < boundary]
    head_dateext.sort()

    # Insertions are collected as {index: [lines]} and applied from the end.
    inserts: dict = {}

    def add_insert(at: int, new_lines: List[str]) -> None:
        inserts.setdefault(at, []).extend(new_lines)

    for idx in replaced:
        if idx == 0 or not _is_marker(parsed.lines[idx - 1]):
            add_insert(idx, [_indent_of(parsed.lines[idx].text) + MARKER])

    head_dateformat = [i for i in parsed.global_directives("dateformat") if i < boundary]

    inserted_block = False
    if not head_dateext:
        at = _insertion_point(parsed, boundary)
        block = [MARKER, "dateext"]
        if dateformat is not None and not head_dateformat:
            block.append("dateformat " + dateformat)
        if at == len(items):
            # End of file: make sure the last line is terminated, separate with a blank line.
            if items and not items[-1][1]:
                items[-1][1] = eol
            if items and items[-1][0].strip():
                block.insert(0, "")
        else:
            block.append("")  # one blank line between our lines and what follows
        add_insert(at, block)
        changed = True
        messages.append("added a global 'dateext' before the first include/block")
        inserted_block = True

    if dateformat is not None:
        if head_dateformat:
            last = head_dateformat[-1]
            if parsed.lines[last].value != dateformat:
                items[last][0] = _indent_of(parsed.lines[last].text) + "dateformat " + dateformat
                messages.append(f"changed global 'dateformat' at line {parsed.lines[last].number} to {dateformat}")
                changed = True
        elif not inserted_block:
            # An existing (or replaced) dateext: add dateformat right after it.
            anchor = head_dateext[0]
            group_marked = (anchor > 0 and _is_marker(parsed.lines[anchor - 1])) or anchor in replaced
            new = ["dateformat " + dateformat] if group_marked else [MARKER, "dateformat " + dateformat]
            add_insert(anchor + 1, new)
            messages.append(f"added global 'dateformat {dateformat}'")
            changed = True

    if not changed:
        return EditResult(text=text, changed=False, messages=messages)

    for at in sorted(inserts, reverse=True):
        items[at:at] = [[body, eol] for body in inserts[at]]
    return EditResult(text="".join(body + end for body, end in items), changed=True, messages=messages)


def disable_dateext(text: str) -> EditResult:
    """Remove the dateext/dateformat lines this module manages (those right after the marker comment)."""
    parsed = parse(text)
    physical = _split_keep_ends(text)
    remove = set()
    for idx, line in enumerate(parsed.lines):
        if not _is_marker(line):
            continue
        group = _managed_group(parsed, idx)
        remove.add(idx)
        remove.update(group)
        last = group[-1] if group else idx
        after = last + 1
        inserted_block = any(parsed.lines[i].key == "dateext" for i in group)
        if inserted_block and after < len(parsed.lines) and parsed.lines[after].kind == BLANK:
            remove.add(after)  # the blank line enable_dateext puts after the lines it inserts
        elif inserted_block and after >= len(parsed.lines) and idx > 0 and parsed.lines[idx - 1].kind == BLANK:
            remove.add(idx - 1)  # block appended at EOF after a separating blank line
    messages = []
    for idx in parsed.global_directives("dateext"):
        if idx not in remove:
            messages.append(
                f"global 'dateext' at line {parsed.lines[idx].number} is not managed by dervish; left in place"
            )
    if not remove:
        return EditResult(text=text, changed=False, messages=messages)
    new = "".join(raw for idx, raw in enumerate(physical) if idx not in remove)
    return EditResult(text=new, changed=True, messages=["removed the dervish-managed dateext lines"] + messages)


def has_effective_dateext(text: str) -> bool:
    """True when a global ``dateext`` precedes the first include/block and no global nodateext follows."""
    parsed = parse(text)
    boundary = parsed.first_boundary()
    return any(i < boundary for i in parsed.global_directives("dateext")) and not parsed.global_directives(
        "nodateext"
    )


def find_nodateext(parsed: ParsedConfig, filename: str, include_global: bool) -> List[Override]:
    out = []
    for line in parsed.lines:
        if line.kind != DIRECTIVE or line.key != "nodateext":
            continue
        if line.block is None:
            if include_global:
                out.append(Override(file=filename, line=line.number, block=None))
        else:
            out.append(Override(file=filename, line=line.number, block=parsed.blocks[line.block].label))
    return out


def is_taboo(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in TABOO_PATTERNS)


def include_targets(value: str, base_dir: str) -> List[str]:
    """Files read by ``include <value>``: the file itself, or a directory's regular, non-taboo files, sorted."""
    parts = _split_paths(value)
    if not parts:
        return []
    target = os.path.expanduser(parts[0])
    if not os.path.isabs(target):
        target = os.path.join(base_dir, target)
    if os.path.isdir(target):
        names = sorted(n for n in os.listdir(target) if not is_taboo(n))
        return [os.path.join(target, n) for n in names if os.path.isfile(os.path.join(target, n))]
    if os.path.isfile(target):
        return [target]
    return []


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def collect_overrides(
    main_path: str,
    main_text: str,
    reader: Callable[[str], str] = _read_text,
) -> Tuple[List[Override], List[str]]:
    """Every ``nodateext`` that overrides a global dateext: blocks of the main file, plus blocks and
    global settings of included files and directories (followed recursively, each file once).

    Returns (overrides, problems); problems name included files that could not be read or parsed.
    """
    base_dir = os.path.dirname(os.path.abspath(main_path))
    overrides: List[Override] = []
    problems: List[str] = []
    seen = {os.path.abspath(main_path)}

    def walk(path: str, text: str, is_main: bool) -> None:
        try:
            parsed = parse(text)
        except LogrotateConfError as exc:
            problems.append(f"{path}: {exc}")
            return
        overrides.extend(find_nodateext(parsed, path, include_global=not is_main))
        for inc in parsed.includes():
            for target in include_targets(inc.value, base_dir):
                key = os.path.abspath(target)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    sub = reader(target)
                except OSError as exc:
                    problems.append(f"{target}: {exc.strerror or exc}")
                    continue
                walk(target, sub, False)

    walk(main_path, main_text, True)
    return overrides, problems


_ERROR_LINE = re.compile(r"^error:", re.IGNORECASE)


def logrotate_errors(output: str, tmp_path: str, real_path: str) -> List[str]:
    """The ``error:`` lines of ``logrotate -d`` output, with the temporary file name replaced by the real one
    and its line numbers masked, so errors of the current and the candidate file can be compared."""
    out = []
    for line in output.splitlines():
        if not _ERROR_LINE.match(line.strip()):
            continue
        line = line.strip().replace(tmp_path, real_path)
        line = re.sub(re.escape(real_path) + r":\d+", real_path + ":N", line)
        out.append(line)
    return out


def new_errors(candidate: List[str], current: List[str]) -> List[str]:
    """Errors of the candidate that the current file does not already have (multiset difference)."""
    pool = list(current)
    fresh = []
    for err in candidate:
        if err in pool:
            pool.remove(err)
        else:
            fresh.append(err)
    return fresh
