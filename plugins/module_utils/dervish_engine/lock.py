"""Per-vault run lock ``<vault>/dirvish/lock_file`` with stale-lock detection.

The lock file keeps Debian Dirvish's name and puts the PID on the first line, so Dirvish-era tools
still find it; further ``key: value`` lines record what makes the lock verifiable::

    12345
    boot-id: bf9b156f-825c-4903-b9c7-0d1cc87798c7
    host: backup
    pid-start: 8812345
    started: 2026-11-26 14:20:01
    image: /srv/backup/vault1/20261126142001

A lock is *stale* when its boot id differs from the running kernel's, or (same host) the PID is gone,
a zombie, or a different process (start time differs). A lock written by another host is treated as
live. A lock holding only a PID (Dirvish writes nothing else) cannot be checked that way, so its PID
must also look like its writer: a process that started after the lock file was last written (PID 1
after a reboot, a PID reused since) or whose command line names neither dirvish nor dervish is
not the run that took the lock. The atomic check-and-take runs under ``fcntl.flock`` on ``lock_file.flock`` next to it.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from .confgrammar import read_text_file
from .errors import ConfigError, LockedError

LOCK_NAME = "lock_file"
FLOCK_NAME = "lock_file.flock"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class LockInfo:
    pid: int
    boot_id: str = ""
    host: str = ""
    pid_start: str = ""
    started: str = ""
    image: str = ""
    written: float = 0.0  # mtime of the lock file (not part of its text)

    def render(self) -> str:
        return (f"{self.pid}\nboot-id: {self.boot_id}\nhost: {self.host}\npid-start: {self.pid_start}\n"
                f"started: {self.started}\nimage: {self.image}\n")


def lock_path(vault_dir) -> Path:
    return Path(vault_dir) / "dirvish" / LOCK_NAME


def boot_id() -> str:
    try:
        return Path(BOOT_ID_PATH).read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int):
    """(state, start time) of a process from /proc, or None when it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = data[data.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def process_start(pid: int) -> str:
    stat = _proc_stat(pid)
    return stat[1] if stat else ""


def parse_lock(text: str) -> Optional[LockInfo]:
    lines = text.splitlines() or [""]
    try:
        pid = int(lines[0].strip())
    except ValueError:
        return None
    values = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return LockInfo(pid, values.get("boot-id", ""), values.get("host", ""), values.get("pid-start", ""),
                    values.get("started", ""), values.get("image", ""))


def read_lock(vault_dir) -> Optional[LockInfo]:
    """The lock of a vault, or None when there is none. An unreadable PID counts as PID 0 (stale).

    A lock that is not a regular file (a FIFO would block the reader) is no run's lock: PID 0, and
    the next run replaces it.
    """
    try:
        text = read_text_file(lock_path(vault_dir), "lock file", missing_ok=True)
    except ConfigError:
        return LockInfo(0)
    if text is None:
        return None
    info = parse_lock(text)
    if info is None:
        return LockInfo(0)
    try:
        written = os.stat(str(lock_path(vault_dir))).st_mtime
    except OSError:
        written = 0.0
    return LockInfo(info.pid, info.boot_id, info.host, info.pid_start, info.started, info.image, written)


def lock_is_live(info: LockInfo) -> bool:
    """True when the process that wrote ``info`` may still be running.

    The boot id decides which machine and boot wrote the lock (a renamed host is still this one);
    only without a usable boot id does the host name count, and another host's lock is kept.
    """
    current_boot = boot_id()
    same_boot = bool(info.boot_id) and bool(current_boot) and info.boot_id == current_boot
    if not same_boot:
        if info.host and info.host != socket.gethostname():
            return True
        if info.boot_id and current_boot:
            return False  # this machine, an earlier boot
    if info.pid <= 0:
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(info.pid)
    if stat is None:
        return os.path.exists(f"/proc/{info.pid}") or not os.path.isdir("/proc/self")
    if stat[0] in ("Z", "X"):
        return False
    if info.pid_start:
        return stat[1] == info.pid_start
    return _may_be_writer(info.pid, stat[1], info.written)


BACKUP_COMMAND_RE = re.compile(rb"d[ei]rvish")
CLOCK_SLACK = 2.0  # seconds: file times and the boot time are coarser than the process start


def _boot_time() -> Optional[float]:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _may_be_writer(pid: int, start_ticks: str, written: float) -> bool:
    """Could the live process ``pid`` have written a PID-only lock last modified at ``written``?

    No when it started after that (its PID was reused: PID 1 after a reboot), or when its command
    line names neither dirvish nor dervish (a backup runs as ``perl /usr/sbin/dirvish ...``,
    ``python3 /usr/local/sbin/dervish ...`` or ``python -m dervish_engine ...``). What cannot be read
    counts as yes: a lock is only broken on evidence.
    """
    boot = _boot_time()
    if written and boot is not None and start_ticks.isdigit():
        started = boot + int(start_ticks) / os.sysconf("SC_CLK_TCK")
        if started > written + CLOCK_SLACK:
            return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not cmdline or bool(BACKUP_COMMAND_RE.search(cmdline))


def live_holder(vault_dir, vault: str) -> Optional[str]:
    """``vault V is being backed up by PID N ...`` when a live run holds the vault, else None.

    Only reads: a vault found busy is not written to (a stale lock is cleared by ``acquire``).
    """
    info = read_lock(vault_dir)
    return _describe(vault, info) if info is not None and lock_is_live(info) else None


def is_locked(vault_dir) -> bool:
    """True when a live run holds the vault (stale locks do not count)."""
    info = read_lock(vault_dir)
    return info is not None and lock_is_live(info)


@contextmanager
def _flocked(vault_dir):
    meta = Path(vault_dir) / "dirvish"
    meta.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(meta / FLOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _describe(vault: str, info: LockInfo) -> str:
    where = f" on {info.host}" if info.host and info.host != socket.gethostname() else ""
    since = f" since {info.started}" if info.started else ""
    return f"vault {vault} is being backed up by PID {info.pid}{where}{since}"


def acquire(vault_dir, vault: str, image_dir="", now: Optional[datetime] = None) -> Optional[LockInfo]:
    """Take the vault lock atomically.

    Returns the stale lock that was replaced (the caller recovers its image), or None.
    Raises LockedError when a live run holds the vault.
    """
    now = now or datetime.now()
    mine = LockInfo(os.getpid(), boot_id(), socket.gethostname(), process_start(os.getpid()),
                    now.strftime("%Y-%m-%d %H:%M:%S"), str(image_dir))
    path = lock_path(vault_dir)
    with _flocked(vault_dir):
        old = read_lock(vault_dir)
        if old is not None and lock_is_live(old):
            raise LockedError(_describe(vault, old))
        tmp = path.with_name(LOCK_NAME + ".tmp")
        tmp.write_text(mine.render(), encoding="utf-8")
        os.replace(str(tmp), str(path))
    return old


def release(vault_dir) -> None:
    """Remove the lock if this process holds it."""
    with _flocked(vault_dir):
        info = read_lock(vault_dir)
        if info is not None and info.pid == os.getpid() and info.boot_id == boot_id():
            with suppress(FileNotFoundError):
                lock_path(vault_dir).unlink()
