# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edit the prune lists of locate's nightly indexer, stdlib only.

* ``/etc/updatedb.conf`` (plocate, mlocate, and Debian's old findutils, which sourced it as shell):
  ``NAME="value"`` lines. plocate and mlocate need double quotes and accept blanks around ``=`` and a
  trailing ``# comment``; findutils also took ``export NAME=...``, single quotes and unquoted values.
* Red Hat's old ``/etc/cron.daily/slocate.cron``: ``/usr/bin/updatedb -f "nfs,..." -e "/tmp,/var/tmp"``,
  where ``-e`` takes a comma-separated list of directories to exclude.

Only the edited line changes; everything else (other variables, comments, spacing) stays byte-for-byte.
Entries are compared with repeated and trailing slashes removed, and new entries are written that way
too: updatedb compares PRUNEPATHS entries literally, so ``/backup/`` would not prune ``/backup``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

FORBIDDEN_CHARS = set("\"'`\\$")

CREATED_HEADER = (
    "# updatedb.conf: created by dervish (dervish.backup.locate_prunepaths).\n"
    "# See updatedb.conf(5). Only PRUNEPATHS is set; updatedb's built-in defaults apply to the rest.\n"
)

_ASSIGN = re.compile(
    r"^(?P<lead>[ \t]*)(?P<export>export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"'#]*)(?P<rest>.*)$"
)

# A command word that runs updatedb, or slocate (which must then get -u/-U, "update the database").
_COMMAND_WORD = re.compile(
    r"(?:^|(?<=[\s;&|(`]))(?P<cmd>(?:[^\s;&|()`'\"]*/)?(?P<name>updatedb|slocate))(?=$|[\s;&|)`])"
)
# Words after which "updatedb" is an argument, not a command: [ -x /usr/bin/updatedb ], command -v, which ...
_NOT_COMMAND_AFTER = frozenset({"-x", "-f", "-e", "-s", "-r", "-w", "-L", "-h", "-a", "-v", "-V", "which", "type",
                                "whereis", "hash", "rm", "ln", "ls", "cat", "echo", "printf"})
_EXCLUDE_OPT = re.compile(r"(?P<opt>[ \t]-e)(?P<sp>[ \t]*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"';&|]+)")


class PrunePathError(ValueError):
    """A path that cannot be put into a space- or comma-separated prune list."""


@dataclass
class EditResult:
    text: str
    changed: bool
    entries: List[str]  # the resulting list (PRUNEPATHS, or the -e lists of a cron script)
    warnings: List[str] = field(default_factory=list)


def normalise(path: str) -> str:
    """Comparison key (and the form written for new entries): no repeated or trailing slashes."""
    path = re.sub(r"/{2,}", "/", path)
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def check_path(path: object, option: str = "paths") -> str:
    """Return the normalised path or raise PrunePathError naming the option and the offending value."""
    if not isinstance(path, str) or not path:
        raise PrunePathError(f"{option}: {path!r} is not a path")
    if not path.startswith("/"):
        raise PrunePathError(f"{option}: {path!r} is not an absolute path")
    if any(ch.isspace() for ch in path):
        raise PrunePathError(f"{option}: {path!r} contains whitespace; updatedb's prune lists are space-separated")
    bad = sorted(set(path) & FORBIDDEN_CHARS)
    if bad:
        raise PrunePathError(f"{option}: {path!r} contains {' '.join(bad)}; quotes, backslash and $ are not allowed")
    return normalise(path)


def _tokens(inner: str) -> List[re.Match]:
    return list(re.finditer(r"\S+", inner))


def _add_to_list(inner: str, items: Sequence[str], sep: str, splitter: str) -> str:
    """Append ``items`` after the last entry of ``inner``, keeping the blanks around the list."""
    matches = list(re.finditer(splitter, inner))
    if not matches:
        return sep.join(items)
    end = matches[-1].end()
    return inner[:end] + "".join(sep + item for item in items) + inner[end:]


def _remove_from_list(inner: str, keys: set, splitter: str) -> str:
    """Drop the entries whose normalised form is in ``keys``; kept entries keep the separator before them."""
    matches = list(re.finditer(splitter, inner))
    kept = [j for j, m in enumerate(matches) if normalise(m.group(0)) not in keys]
    if len(kept) == len(matches):
        return inner
    if not kept:
        return ""
    seps = [inner[matches[j].end():matches[j + 1].start()] for j in range(len(matches) - 1)]
    out = inner[: matches[0].start()]
    for n, j in enumerate(kept):
        if n:
            out += seps[j - 1]
        out += matches[j].group(0)
    return out + inner[matches[-1].end():]


def _split_value(value: str):
    if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) >= 2:
        return value[0], value[1:-1]
    return "", value


def prunepaths_of(text: str, name: str = "PRUNEPATHS") -> Optional[List[str]]:
    """The entries of the last ``name=`` assignment, or None when there is none."""
    found = None
    for line in text.splitlines():
        m = _ASSIGN.match(line)
        if m and m.group("name") == name:
            found = _split_value(m.group("value"))[1].split()
    return found


def edit_updatedb_conf(text: str, paths: Sequence[str], state: str = "present", name: str = "PRUNEPATHS") -> EditResult:
    """Add (state=present) or remove (state=absent) ``paths`` in the ``name`` variable of updatedb.conf."""
    wanted = [check_path(p) for p in paths]
    keys = set(wanted)
    physical = text.splitlines(keepends=True)
    hits = []
    for idx, raw in enumerate(physical):
        m = _ASSIGN.match(raw.rstrip("\r\n"))
        if m and m.group("name") == name:
            hits.append((idx, m))
    warnings: List[str] = []
    if len(hits) > 1:
        warnings.append(
            f"{name} is set {len(hits)} times (lines {', '.join(str(i + 1) for i, _match in hits)}); "
            f"plocate and mlocate reject that; only the last one was edited"
        )

    if not hits:
        if state == "absent" or not wanted:
            return EditResult(text=text, changed=False, entries=[], warnings=warnings)
        deduped = list(dict.fromkeys(wanted))
        eol = "\r\n" if physical and physical[-1].endswith("\r\n") else "\n"
        prefix = text if not text or text.endswith(("\n", "\r")) else text + eol
        new = prefix + f'{name}="{" ".join(deduped)}"{eol}'
        return EditResult(text=new, changed=True, entries=deduped, warnings=warnings)

    idx, m = hits[-1]
    quote, inner = _split_value(m.group("value"))

    def quoting_warning(final_quote: str) -> None:
        if final_quote != '"':
            warnings.append(
                f"line {idx + 1}: {name} is {'single-quoted' if final_quote else 'unquoted'}; plocate and mlocate "
                f"only read double-quoted values"
            )

    existing = [normalise(t.group(0)) for t in _tokens(inner)]
    for tok in _tokens(inner):
        if normalise(tok.group(0)) != tok.group(0):
            warnings.append(
                f"line {idx + 1}: {name} entry {tok.group(0)!r} is not matched by updatedb as written "
                f"(use {normalise(tok.group(0))!r})"
            )
    if state == "present":
        missing = [p for p in dict.fromkeys(wanted) if p not in existing]
        if not missing:
            quoting_warning(quote)
            return EditResult(text=text, changed=False, entries=inner.split(), warnings=warnings)
        new_inner = _add_to_list(inner, missing, " ", r"\S+")
    else:
        if not keys & set(existing):
            quoting_warning(quote)
            return EditResult(text=text, changed=False, entries=inner.split(), warnings=warnings)
        new_inner = _remove_from_list(inner, keys, r"\S+")
    if quote == "" and (re.search(r"\s", new_inner) or not new_inner):
        quote = '"'
    quoting_warning(quote)
    raw = physical[idx]
    body = raw.rstrip("\r\n")
    line = m.group("lead") + (m.group("export") or "") + m.group("name") + m.group("eq")
    line += quote + new_inner + quote + m.group("rest") + raw[len(body):]
    physical[idx] = line
    return EditResult(text="".join(physical), changed=True, entries=new_inner.split(), warnings=warnings)


def default_updatedb_conf(paths: Sequence[str], name: str = "PRUNEPATHS") -> str:
    entries = list(dict.fromkeys(check_path(p) for p in paths))
    return CREATED_HEADER + f'{name}="{" ".join(entries)}"\n'


def _command_end(body: str, start: int) -> int:
    """End of the simple command starting at ``start``: the first unquoted ; & | > < or the end of line."""
    quote = ""
    for pos in range(start, len(body)):
        ch = body[pos]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in ";&|<>#" and (ch != "#" or body[pos - 1].isspace()):
            return pos
    return len(body)


def _find_command(body: str):
    """(match of the updatedb/slocate word, end of its command) or None."""
    for m in _COMMAND_WORD.finditer(body):
        before = body[: m.start()].split()
        if before and before[-1] in _NOT_COMMAND_AFTER:
            continue
        end = _command_end(body, m.end())
        if m.group("name") == "slocate" and not re.search(r"[ \t]-[uU]\b", body[m.end():end]):
            continue
        return m, end
    return None


def _find_exclude(body: str, start: int, end: int):
    for opt in _EXCLUDE_OPT.finditer(body, start, end):
        if opt.group("sp") or opt.group("value")[:1] in ("'", '"', "/"):
            return opt
    return None


def edit_slocate_cron(text: str, paths: Sequence[str], state: str = "present") -> EditResult:
    """Add/remove ``paths`` in the ``-e`` exclude list of every updatedb/``slocate -u`` command line."""
    wanted = list(dict.fromkeys(check_path(p) for p in paths))
    if state == "present":
        for p in wanted:
            if "," in p:
                raise PrunePathError(f"paths: {p!r} contains ','; slocate's -e list is comma-separated")
    keys = set(wanted)
    physical = text.splitlines(keepends=True)
    warnings: List[str] = []
    entries: List[str] = []
    changed = False
    commands = 0
    for idx, raw in enumerate(physical):
        body = raw.rstrip("\r\n")
        if body.lstrip().startswith("#"):
            continue
        found = _find_command(body)
        if not found:
            continue
        cmd, cmd_end = found
        commands += 1
        opt = _find_exclude(body, cmd.end(), cmd_end)
        if opt is None:
            if state == "absent" or not wanted:
                continue
            insert = f' -e "{",".join(wanted)}"'
            physical[idx] = body[: cmd.end("cmd")] + insert + body[cmd.end("cmd"):] + raw[len(body):]
            entries.extend(wanted)
            changed = True
            continue
        quote, inner = _split_value(opt.group("value"))
        current = [t for t in re.split(r"[\s,]+", inner) if t]
        current_keys = [normalise(t) for t in current]
        sep = "," if ("," in inner or not re.search(r"\S\s+\S", inner)) else " "
        if state == "present":
            missing = [p for p in wanted if p not in current_keys]
            if not missing:
                entries.extend(current)
                continue
            new_inner = _add_to_list(inner, missing, sep, r"[^\s,]+")
        else:
            if not keys & set(current_keys):
                entries.extend(current)
                continue
            new_inner = _remove_from_list(inner, keys, r"[^\s,]+")
        new_list = [t for t in re.split(r"[\s,]+", new_inner) if t]
        if not new_list:
            new_opt = ""  # nothing left to exclude: drop "-e ..." altogether
        else:
            if quote == "" and re.search(r"\s", new_inner):
                quote = '"'
            new_opt = opt.group("opt") + opt.group("sp") + quote + new_inner + quote
        body = body[: opt.start()] + new_opt + body[opt.end():]
        physical[idx] = body + raw[len(raw.rstrip("\r\n")):]
        entries.extend(new_list)
        changed = True
    if commands == 0:
        warnings.append("no updatedb or 'slocate -u' command line found")
    new_text = "".join(physical) if changed else text
    return EditResult(text=new_text, changed=changed, entries=list(dict.fromkeys(entries)), warnings=warnings)
