"""``dervish status``: per vault the last good image, the last attempt, age, count and space used.

Space used is the vault's real disk usage: ``st_blocks * 512`` of every file, directory and link below
the vault directory, each inode counted once (hard links shared between images are counted once).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import List, Optional

from .errors import DervishError
from .lock import is_locked
from .summary import parse_summary, status_is_good
from .timespec import format_time, parse_time


@dataclass
class VaultStatus:
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
    bytes_used: int = 0
    running: bool = False


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


def vault_status(vault_dir, now: Optional[datetime] = None, with_usage: bool = True) -> VaultStatus:
    vault_dir = Path(vault_dir)
    now = now or datetime.now()
    vs = VaultStatus(vault_dir.name, str(vault_dir.parent), str(vault_dir))
    attempts = []
    for entry in sorted(vault_dir.iterdir()):
        if entry.name == "dirvish" or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            s = parse_summary((entry / "summary").read_text(encoding="utf-8", errors="surrogateescape"))
        except (OSError, DervishError):
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
    if good:
        dummy, name, s = max(good, key=lambda a: (parse_time(a[2].backup_complete) or datetime.min, a[0], a[1]))
        vs.last_good = name
        vs.last_good_complete = s.backup_complete
        done = parse_time(s.backup_complete)
        if done is not None:
            vs.age_seconds = max(0, int((now - done).total_seconds()))
    vs.running = is_locked(vault_dir)
    if with_usage:
        vs.bytes_used = disk_usage(vault_dir)
    return vs


def vault_dirs(banks) -> List[Path]:
    found = []
    for bank in banks:
        try:
            entries = sorted(Path(bank).iterdir())
        except OSError:
            continue
        found.extend(e for e in entries if e.is_dir() and (e / "dirvish").is_dir())
    return found


def collect(master, now: Optional[datetime] = None) -> List[VaultStatus]:
    return [vault_status(v, now) for v in vault_dirs(master.banks)]


def human_bytes(n: int) -> str:
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


def render_table(rows: List[VaultStatus]) -> str:
    header = ("VAULT", "LAST GOOD", "AGE", "LAST ATTEMPT", "STATUS", "IMAGES", "USED")
    lines = [header]
    for r in rows:
        status = (r.last_attempt_status or "-") + (" [running]" if r.running else "")
        lines.append((r.vault, r.last_good or "-", human_age(r.age_seconds), r.last_attempt or "-", status,
                      f"{r.good_images}/{r.images}", human_bytes(r.bytes_used)))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = []
    for row in lines:
        cells = [row[i].ljust(widths[i]) for i in range(len(widths))] + [row[-1]]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def render_json(rows: List[VaultStatus], now: Optional[datetime] = None) -> str:
    doc = {"generated": format_time(now or datetime.now()), "vaults": [asdict(r) for r in rows]}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
