"""The image ``summary`` file: dataclass, rendering in Dirvish's exact order, tolerant parsing.

Layout written by Dirvish 1.2.1 (dirvish:496-534, 555, 756-799) and reproduced here::

    client: <client>                      \\
    tree: <tree as configured>             |
    rsh: <rsh>                             |
    Server: <server hostname>              |
    Bank: <bank>                           |  empty fields are omitted;
    vault: <vault>                         |  image-temp only when used,
    branch: <branch>                       |  Expire-rule only when a rule matched
    Image: <image name>                    |
    image-temp: <temp name>                |
    Reference: <reference image or branch> |
    Image-now: YYYY-MM-DD HH:MM:SS         |
    Expire: <spec> == YYYY-MM-DD HH:MM:SS  |  or "Never"
    Expire-rule: <rule text>              /
    exclude:
    <TAB>pattern ...
    rsync-option:
    <TAB>argument ...
    SET permissions devices ... <- trailing space
    UNSET checksum sparse ...   <- trailing space
    <blank>
    [summary: long -> every other option, sorted, "key: value" / "key:" + TAB items]
    <blank>
    ACTION: rsync ...
    Backup-begin: YYYY-MM-DD HH:MM:SS   <- end of render_head (omitted when not yet begun: dry run)
    Metadata: ok                        <- render_tail: dervish only, the restore metadata (see below)
    Image-bytes: 123456789              <- dervish only, rsync's figures (module space)
    Image-new-bytes: 4567                  when known; then hook failure lines, Backup-complete, Status
    post-client failed (3)
    Backup-complete: YYYY-MM-DD HH:MM:SS
    Status: success

Times are kept as the text written (``YYYY-MM-DD HH:MM:SS``); use ``timespec.format_time`` /
``timespec.parse_time`` to convert. The file stays readable by Dirvish's own tools (which read it
with the config grammar); values are written verbatim, so a ``#`` in a value is cut off there.
``Metadata:`` says whether the image has ``metadata/`` (the vault's ``metadata:`` command): ``ok``,
``ok (items failed: a, b)`` (written, some items missing), ``failed (<reason>)`` (no ``metadata/``)
or ``none`` (not configured); absent in images made before it or by Dirvish.
``Metadata``, ``Image-bytes`` and ``Image-new-bytes`` are capitalised like Dirvish's own run-time keys: Dirvish's tools
look summary keys up by name, so these change nothing for them (tests/integration/engine/
test_dirvish_interop.py runs dirvish-locate and dirvish on such banks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

from . import confgrammar as g

_HOOK_FAIL_RE = re.compile(r"^(pre-server|pre-client|post-client|post-server) failed \((-?\d+)\)$")

# summary key -> Summary attribute, in Dirvish's order
HEAD_FIELDS = (
    ("client", "client"), ("tree", "tree"), ("rsh", "rsh"), ("Server", "server"), ("Bank", "bank"),
    ("vault", "vault"), ("branch", "branch"), ("Image", "image"), ("image-temp", "image_temp"),
    ("Reference", "reference"), ("Image-now", "image_now"), ("Expire", "expire"),
    ("Expire-rule", "expire_rule"),
)
_BY_KEY = dict(HEAD_FIELDS)


@dataclass
class Summary:
    """Content of a ``summary`` file.

    ``expire`` is the full ``Expire:`` value (``+15 days == 2026-12-11 12:24:14`` or ``Never``).
    ``set_flags`` / ``unset_flags`` are the boolean names of the SET / UNSET lines.
    ``extra`` holds the long-summary options (key -> str or list of str); non-empty only in long
    mode. ``hook_failures`` holds lines like ``post-client failed (3)``. ``image_bytes`` is the size
    of the files in the tree and ``image_new_bytes`` what the run copied (the rest are hard links).
    ``metadata`` is the ``Metadata:`` text (None when the image has no such line).
    ``status`` is the text after ``Status:`` (None while running or after a hook failure that stopped the run).
    ``other`` keeps lines a parser did not understand (never rendered).
    """

    client: Optional[str] = None
    tree: Optional[str] = None
    rsh: Optional[str] = None
    server: Optional[str] = None
    bank: Optional[str] = None
    vault: Optional[str] = None
    branch: Optional[str] = None
    image: Optional[str] = None
    image_temp: Optional[str] = None
    reference: Optional[str] = None
    image_now: Optional[str] = None
    expire: Optional[str] = None
    expire_rule: Optional[str] = None
    excludes: List[str] = field(default_factory=list)
    rsync_options: List[str] = field(default_factory=list)
    set_flags: List[str] = field(default_factory=list)
    unset_flags: List[str] = field(default_factory=list)
    extra: Dict[str, Union[str, List[str]]] = field(default_factory=dict)
    action: Optional[str] = None
    backup_begin: Optional[str] = None
    hook_failures: List[str] = field(default_factory=list)
    image_bytes: Optional[int] = None
    image_new_bytes: Optional[int] = None
    metadata: Optional[str] = None
    backup_complete: Optional[str] = None
    status: Optional[str] = None
    other: List[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        """Completed with a good status (what dirvish-locate requires)."""
        return bool(self.backup_complete) and status_is_good(self.status)

    @property
    def has_metadata(self) -> bool:
        """The run wrote ``metadata/`` (possibly with some items failed)."""
        return metadata_is_ok(self.metadata)


def metadata_is_ok(text: Optional[str]) -> bool:
    return bool(text) and (text.strip() == "ok" or text.strip().startswith("ok "))


def status_is_good(status: Optional[str]) -> bool:
    """``success`` or a warning (``warning (24) -- file vanished on sender``) counts as good."""
    if not status:
        return False
    text = status.strip()
    return text.startswith("success") or text.startswith("warn")


def hook_failure_line(hook: str, code: int) -> str:
    """The line Dirvish writes when a hook fails, e.g. ``post-client failed (3)``."""
    return f"{hook} failed ({code})"


def _list(lines: List[str], key: str, items) -> None:
    if items:
        lines.append(f"{key}:")
        lines.extend(f"\t{item}" for item in items)


def render_head(s: Summary) -> str:
    """Everything up to and including ``ACTION:`` (and ``Backup-begin:`` when set)."""
    lines: List[str] = []
    for key, attr in HEAD_FIELDS:
        value = getattr(s, attr)
        if value:
            lines.append(f"{key}: {value}")
    _list(lines, "exclude", s.excludes)
    _list(lines, "rsync-option", s.rsync_options)
    if s.set_flags:
        lines.append("SET " + "".join(f + " " for f in s.set_flags))
    if s.unset_flags:
        lines.append("UNSET " + "".join(f + " " for f in s.unset_flags))
    lines.append("")
    for key in sorted(s.extra):
        value = s.extra[key]
        if isinstance(value, (list, tuple)):
            _list(lines, key, value)
        elif value not in (None, ""):
            lines.append(f"{key}: {value}")
    lines.append("")
    lines.append(f"ACTION: {s.action or ''}")
    if s.backup_begin:
        lines.append(f"Backup-begin: {s.backup_begin}")
    return "\n".join(lines) + "\n"


def render_tail(s: Summary) -> str:
    """``Metadata:``, the space figures, hook-failure lines, ``Backup-complete:`` and ``Status:`` (each only when set).

    Hook-failure lines stay right before ``Backup-complete:``, where Dirvish writes them.
    """
    lines = [f"{key}: {value}" for key, value in (("Metadata", s.metadata), ("Image-bytes", s.image_bytes),
                                                  ("Image-new-bytes", s.image_new_bytes)) if value is not None]
    lines.extend(s.hook_failures)
    if s.backup_complete:
        lines.append(f"Backup-complete: {s.backup_complete}")
    if s.status is not None:
        lines.append(f"Status: {s.status}")
    return "".join(line + "\n" for line in lines)


def render(s: Summary) -> str:
    """The whole file (head + tail)."""
    return render_head(s) + render_tail(s)


def read_summary(path) -> Optional[Summary]:
    """Parse the summary file ``path``; None when there is none (the directory is not an image).

    ``ConfigError`` naming the file when it is not a regular file (a FIFO must not hang status,
    expire or locate) or cannot be read.
    """
    text = g.read_text_file(path, "summary", missing_ok=True)
    return None if text is None else parse_summary(text)


def parse_summary(text: str) -> Summary:
    """Parse a summary written by Dirvish or dervish; never raises on odd content.

    Missing fields stay None (a run that was killed has no ``Status``/``Backup-complete``).
    Keys between the SET/UNSET lines and ``ACTION:`` are long-summary options (``extra``).
    """
    s = Summary()
    after_flags = False
    after_action = False
    for st in g.parse_text(text, strict=False, comments=False):
        if st.kind == g.TEXT:
            if _HOOK_FAIL_RE.match(st.value):
                s.hook_failures.append(st.value)
            else:
                s.other.append(st.value)
            continue
        if st.kind in (g.SET, g.UNSET):
            (s.set_flags if st.kind == g.SET else s.unset_flags).extend(st.items)
            after_flags = True
            continue
        if st.kind == g.RESET:
            continue
        key = st.key
        if st.kind == g.LIST:
            if key == "exclude" and not after_flags:
                s.excludes.extend(st.items)
            elif key == "rsync-option" and not after_flags:
                s.rsync_options.extend(st.items)
            elif not after_action:
                s.extra[key] = list(st.items)
            continue
        value = st.value
        if key == "ACTION":
            s.action = value
            after_action = True
        elif key == "Backup-begin":
            s.backup_begin = value
        elif key == "Backup-complete":
            s.backup_complete = value
        elif key == "Status":
            s.status = value
        elif key == "Metadata" and after_action:
            s.metadata = value
        elif key in ("Image-bytes", "Image-new-bytes") and value.isdigit():
            setattr(s, "image_bytes" if key == "Image-bytes" else "image_new_bytes", int(value))
        elif key in _BY_KEY and not (after_flags and key in ("client", "tree", "rsh", "vault", "branch")):
            setattr(s, _BY_KEY[key], value)
        elif not after_action:
            s.extra[key] = value
        else:
            s.other.append(f"{key}: {value}")
    return s
