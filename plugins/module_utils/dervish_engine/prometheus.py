"""``dervish status --prometheus FILE``: the vaults' state in node_exporter's textfile-collector format.

The nightly run writes it at its end, so monitoring needs neither Ansible nor access to the banks:
node_exporter (``--collector.textfile.directory``, Debian: ``/var/lib/prometheus/node-exporter``)
exports every ``*.prom`` file there. The file is replaced atomically (a hidden temporary file in the
same directory, not ending in ``.prom``, renamed over it), so the collector never reads half a file.

Metrics (gauges; ``vault`` labels are vault directory names, the first bank holding a name wins, as
in Dirvish; label values are escaped as the exposition format requires)::

    dervish_vault_last_success_time_seconds{vault}   Backup-complete of the last good image (0: none)
    dervish_vault_last_duration_seconds{vault}       its Backup-begin to Backup-complete
    dervish_vault_last_image_bytes{vault}            its size (Image-bytes)
    dervish_vault_last_new_bytes{vault}              what it copied, the rest being hard links
    dervish_vault_last_status{vault,status}          1 for the class of the last attempt, else 0:
                                                     success, warning, error (also interrupted), running
    dervish_vault_images{vault}                      images (summaries) in the vault
    dervish_vault_good_images{vault}                 of which good
    dervish_vault_metadata{vault}                    1 when the last good image has metadata/
    dervish_bank_present{bank}                       0 when a bank is missing (drive not mounted)
    dervish_run_end_time_seconds                     when the file was written (the run's end)

A figure that is not known (an image Dirvish made has no Image-bytes) is left out, not written as 0.
Alert on ``time() - dervish_vault_last_success_time_seconds`` (stale vault) and on
``time() - dervish_run_end_time_seconds`` (the nightly run stopped before its end, e.g. no drive).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from .errors import DervishError
from .status import VaultStatus
from .timespec import parse_time

STATUS_CLASSES = ("success", "warning", "error", "running")

# name, help text, how to get the value from a VaultStatus (None: left out)
_VAULT_GAUGES = (
    ("dervish_vault_last_success_time_seconds",
     "Unix time the vault's last good image completed (0: the vault has no good image).",
     lambda r: _unix(r.last_good_complete) or 0),
    ("dervish_vault_last_duration_seconds",
     "Seconds the vault's last good image took (Backup-begin to Backup-complete).",
     lambda r: r.last_good_duration),
    ("dervish_vault_last_image_bytes", "Size of the files in the vault's last good image (bytes).",
     lambda r: r.last_good_bytes),
    ("dervish_vault_last_new_bytes",
     "Bytes the vault's last good image copied; the rest are hard links to its reference.",
     lambda r: r.last_good_new_bytes),
)
_COUNT_GAUGES = (
    ("dervish_vault_images", "Images in the vault (good or not).", lambda r: r.images),
    ("dervish_vault_good_images", "Good images in the vault.", lambda r: r.good_images),
    ("dervish_vault_metadata", "1 when the vault's last good image has restore metadata (metadata/).",
     lambda r: 1 if r.metadata else 0),
)


class TextfileError(DervishError):
    """The textfile could not be written; the message names it."""


def escape_label(value: str) -> str:
    """A label value as the exposition format quotes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def status_class(status: Optional[str], running: bool = False) -> Optional[str]:
    """The last attempt's status as one of STATUS_CLASSES (None: no attempt yet)."""
    if status is None:
        return "running" if running else None
    text = status.strip().lower()
    for name in ("success", "warning", "running"):
        if text.startswith(name[:4]):
            return name
    return "error"


def _unix(text: Optional[str]) -> Optional[int]:
    when = parse_time(text)  # summaries hold local time, as timestamp() reads a naive datetime
    return int(when.timestamp()) if when is not None else None


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _family(name: str, text: str, samples: Iterable[Tuple[str, object]]) -> List[str]:
    lines = [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
    lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples if value is not None)
    return lines


def _unique(rows: Sequence[VaultStatus]) -> List[VaultStatus]:
    seen, kept = set(), []
    for row in rows:
        if row.vault not in seen:
            seen.add(row.vault)
            kept.append(row)
    return kept


def render(rows: Sequence[VaultStatus], banks: Sequence[str], missing: Sequence[str] = (),
           now: Optional[float] = None) -> str:
    """The textfile for ``rows`` (from :func:`status.collect`) and the master's ``banks``."""
    rows = _unique(rows)

    def label(row: VaultStatus) -> str:
        return f'{{vault="{escape_label(row.vault)}"}}'

    lines: List[str] = []
    for name, text, get in _VAULT_GAUGES:
        lines += _family(name, text, ((label(r), get(r)) for r in rows))
    samples = []
    for r in rows:
        current = status_class(r.last_attempt_status, r.running)
        samples += [(f'{{vault="{escape_label(r.vault)}",status="{c}"}}', 1 if c == current else 0)
                    for c in STATUS_CLASSES]
    lines += _family("dervish_vault_last_status",
                     "1 for the class of the vault's last attempt (success, warning, error or interrupted, "
                     "running), 0 for the others; all 0 before the first attempt.", samples)
    for name, text, get in _COUNT_GAUGES:
        lines += _family(name, text, ((label(r), get(r)) for r in rows))
    lines += _family("dervish_bank_present", "0 when the bank is missing (is the backup drive mounted?), else 1.",
                     ((f'{{bank="{escape_label(str(b))}"}}', 0 if str(b) in missing else 1) for b in banks))
    lines += _family("dervish_run_end_time_seconds",
                     "Unix time this file was written, at the end of the run that wrote it.",
                     [("", int(time.time() if now is None else now))])
    return "\n".join(lines) + "\n"


def write_atomically(path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` by ``text`` in one rename: readers see the old file or the new one, never half."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    except OSError as exc:
        raise TextfileError(f"cannot write the Prometheus textfile {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it 0600; node_exporter does not run as root
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise TextfileError(f"cannot write the Prometheus textfile {path}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename reaches the disk too
        dirfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _unlink(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
