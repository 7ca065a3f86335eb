"""``dervish status``: per vault the last good image, the last attempt, age, count and space.

Cheap by default, because the nightly run calls it after every backup: only the vault directory and
each image's ``summary`` are read. The space shown is what the last good image's summary recorded
when it was made (``Image-bytes``: size of its files; ``Image-new-bytes``: what that run copied, the
rest being hard links; see :mod:`space`). ``--space`` (``with_usage``) also measures each vault's real
disk usage by walking it: ``st_blocks * 512`` of every file, directory and link below the vault
directory, each inode counted once (hard links shared between images are counted once).

A bank that is missing (an unmounted removable drive) is reported by :func:`missing_banks`, and an
image whose summary cannot be read (not a regular file, unreadable) is one line in ``problems``.

Each row also names the drive holding the vault: the first line of the ``DISKLABEL`` file at the root
of the filesystem the vault is on (the file the nightly run logs to the drive log), and the client
its images were taken from (the newest summary's ``client:``). :func:`is_stale` is the one rule for
"this vault's backups are too old": no good image, or a last good image older than the limit.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import List, Optional

from .errors import DervishError
from .lock import is_locked
from .metadata_layout import METADATA_DIR, METADATA_JSON
from .space import disk_usage
from .summary import read_summary, status_is_good
from .timespec import format_time, parse_time


@dataclass
class VaultStatus:
    """One vault's row. ``last_good_bytes``/``last_good_new_bytes``: recorded by the image (None when
    unknown, e.g. an image Dirvish made); ``last_good_duration``: its Backup-begin to Backup-complete in
    seconds (None when either is missing); ``metadata``: the last good image has ``metadata/`` (its summary
    says ``Metadata: ok`` and ``metadata/metadata.json`` is there; None without a good image);
    ``bytes_used``: measured, only with ``--space``; ``client``: the newest image's ``client:``;
    ``last_attempt_begin``: when the last attempt began; ``disklabel``: see :func:`drive_label`."""

    vault: str
    bank: str
    path: str
    images: int = 0
    good_images: int = 0
    last_good: Optional[str] = None
    last_good_complete: Optional[str] = None
    last_attempt: Optional[str] = None
    last_attempt_status: Optional[str] = None
    age_seconds: Optional[int] = None
    last_good_bytes: Optional[int] = None
    last_good_new_bytes: Optional[int] = None
    last_good_duration: Optional[int] = None
    metadata: Optional[bool] = None
    bytes_used: Optional[int] = None
    running: bool = False
    problems: List[str] = field(default_factory=list)
    client: Optional[str] = None
    last_attempt_begin: Optional[str] = None
    disklabel: Optional[str] = None


def vault_status(vault_dir, now: Optional[datetime] = None, with_usage: bool = False) -> VaultStatus:
    vault_dir = Path(vault_dir)
    now = now or datetime.now()
    vs = VaultStatus(vault_dir.name, str(vault_dir.parent), str(vault_dir))
    attempts = []
    for entry in sorted(vault_dir.iterdir()):
        if entry.name == "dirvish" or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            s = read_summary(entry / "summary")
        except (OSError, DervishError) as exc:
            vs.problems.append(f"{exc}; image {entry.name} not counted")
            continue
        if s is None:
            continue
        started = parse_time(s.backup_begin) or parse_time(s.image_now) or datetime.min
        attempts.append((started, entry.name, s))
    attempts.sort(key=lambda item: (item[0], item[1]))
    vs.images = len(attempts)
    good = [a for a in attempts if status_is_good(a[2].status) and a[2].backup_complete
            and (vault_dir / a[1] / "tree").is_dir()]
    vs.good_images = len(good)
    if attempts:
        dummy, name, s = attempts[-1]
        vs.last_attempt = name
        vs.last_attempt_status = s.status or ("running" if is_locked(vault_dir) else "interrupted (no Status)")
        vs.last_attempt_begin = s.backup_begin or s.image_now
        vs.client = s.client
    if good:
        dummy, name, s = max(good, key=lambda a: (parse_time(a[2].backup_complete) or datetime.min, a[0], a[1]))
        vs.last_good = name
        vs.last_good_complete = s.backup_complete
        vs.last_good_bytes, vs.last_good_new_bytes = s.image_bytes, s.image_new_bytes
        vs.metadata = s.has_metadata and (vault_dir / name / METADATA_DIR / METADATA_JSON).is_file()
        done = parse_time(s.backup_complete)
        begun = parse_time(s.backup_begin)
        if done is not None and begun is not None:
            vs.last_good_duration = max(0, int((done - begun).total_seconds()))
        if done is not None:
            vs.age_seconds = max(0, int((now - done).total_seconds()))
    vs.running = is_locked(vault_dir)
    vs.disklabel = drive_label(vault_dir)
    if with_usage:
        vs.bytes_used = disk_usage(vault_dir)
    return vs


DISKLABEL = "DISKLABEL"


def mount_root(path) -> Path:
    """The topmost directory above ``path`` on the same device: the mount point of its filesystem."""
    here = Path(path).resolve()
    device = here.stat().st_dev
    while here.parent != here and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def read_disklabel(directory) -> Optional[str]:
    """The first line of ``directory/DISKLABEL``; None when missing, empty or not a regular file
    (opened non-blocking and without following a symlink, so a FIFO never blocks), at most 256 bytes."""
    try:
        fd = os.open(os.path.join(str(directory), DISKLABEL),
                     os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    return head.decode("utf-8", "replace").splitlines()[0].strip() if head.strip() else None


def drive_label(path) -> Optional[str]:
    """The label of the drive holding ``path``: ``DISKLABEL`` at the root of its filesystem, or None."""
    try:
        return read_disklabel(mount_root(path))
    except OSError:
        return None


def is_stale(row: VaultStatus, max_age_seconds: float) -> bool:
    """No good image, or the last good one finished more than ``max_age_seconds`` ago."""
    return row.age_seconds is None or row.age_seconds > max_age_seconds


def missing_banks(banks) -> List[str]:
    """Banks that are not directories: an unmounted drive must not look like an empty site."""
    return [str(bank) for bank in banks if not Path(bank).is_dir()]


def missing_bank_message(bank: str) -> str:
    return f"bank {bank} does not exist or is not a directory (is the backup drive mounted?)"


def vault_dirs(banks) -> List[Path]:
    found = []
    for bank in banks:
        try:
            entries = sorted(Path(bank).iterdir())
        except OSError:
            continue
        found.extend(e for e in entries if e.is_dir() and (e / "dirvish").is_dir())
    return found


def collect(master, now: Optional[datetime] = None, with_usage: bool = False) -> List[VaultStatus]:
    """Every vault of every bank; ``with_usage`` walks each vault (``--space``)."""
    return [vault_status(v, now, with_usage) for v in vault_dirs(master.banks)]


def human_bytes(n: Optional[int]) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def human_age(seconds: Optional[int]) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m"


def render_table(rows: List[VaultStatus], with_usage: bool = False) -> str:
    """SIZE / NEW: the last good image's recorded size and what it added; DRIVE: the DISKLABEL of the drive
    holding the vault's images (with rotated drives, which drive this is); USED (``--space``): measured."""
    header = ("VAULT", "LAST GOOD", "AGE", "LAST ATTEMPT", "STATUS", "IMAGES", "SIZE", "NEW", "DRIVE") + (
        ("USED",) if with_usage else ())
    lines = [header]
    for r in rows:
        status = (r.last_attempt_status or "-") + (" [running]" if r.running else "")
        row = (r.vault, r.last_good or "-", human_age(r.age_seconds), r.last_attempt or "-", status,
               f"{r.good_images}/{r.images}", human_bytes(r.last_good_bytes), human_bytes(r.last_good_new_bytes),
               r.disklabel or "-")
        lines.append(row + ((human_bytes(r.bytes_used),) if with_usage else ()))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = []
    for row in lines:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def status_doc(rows: List[VaultStatus], now: Optional[datetime] = None, missing: Optional[List[str]] = None) -> dict:
    """What ``status --json`` prints (the module ``backup_status`` returns the same)."""
    return {"generated": format_time(now or datetime.now()), "vaults": [asdict(r) for r in rows],
            "missing_banks": list(missing or ())}


def render_json(rows: List[VaultStatus], now: Optional[datetime] = None, missing: Optional[List[str]] = None) -> str:
    return json.dumps(status_doc(rows, now, missing), indent=2, sort_keys=True) + "\n"
