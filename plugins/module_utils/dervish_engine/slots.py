"""Image slots: at most ``Runall-jobs:`` images at once on the whole server, across processes.

Every image (``dervish image``, each image of ``runall``, the snapshot module's in-process runs)
holds one of N slots from right before its image directory is created until its run has ended
(hooks, metadata, rsync, index): N = the master's ``Runall-jobs:`` (``backup_server_max_parallel``).
A slot is an ``flock`` on one of the files ``slot-1`` .. ``slot-N`` in the slot directory,
``/run/lock/dervish-slots`` (``$DERVISH_SLOT_DIR``, or ``ImageOptions.slot_dir``, chooses another,
e.g. for tests). The kernel drops the flock when its holder exits, also by SIGKILL: a killed run
never keeps a slot, and nothing has to be cleaned up (``/run`` is empty after a reboot anyway).

Waiting: when all N are taken, the image says once that it waits and for whom, then polls
(``POLL_SECONDS``) until one is free; a stop of the run (``check`` raising, or a signal) ends the
wait. Waiters form no queue: whoever polls first after a slot is freed gets it (a handful of
images per server does not need more). The flocks are per open file, so the threads of one
process (``runall``) compete for slots exactly as separate processes do. A slot file holds its
holder's PID, image and start time, only to say whom a waiting run waits for.

The directory is created ``0755``; it must be a real directory owned by the running user and
writable by no one else (``/run/lock`` is world-writable: a directory or link planted there by
another user is refused, one error line), and slot files are opened without following links.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, List, Optional

from .errors import DervishError

DEFAULT_DIR = "/run/lock/dervish-slots"
ENV_DIR = "DERVISH_SLOT_DIR"
POLL_SECONDS = 0.2
HOLDER_LIMIT = 512  # bytes of a slot file read for the waiting message


class SlotError(DervishError):
    """The slot directory cannot be used (wrong owner, not a directory, not writable)."""


def slot_dir(explicit=None) -> Path:
    """The slot directory: ``explicit``, else ``$DERVISH_SLOT_DIR``, else ``/run/lock/dervish-slots``."""
    return Path(explicit or os.environ.get(ENV_DIR) or DEFAULT_DIR)


def _prepare(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = os.lstat(str(directory))
    except OSError as exc:
        raise SlotError(f"image slot directory {directory}: cannot create it ({exc.strerror or exc}); "
                        f"set {ENV_DIR} to a directory this user may write") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SlotError(f"image slot directory {directory} is not a directory (a link or file is there); "
                        "remove it or set " + ENV_DIR)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SlotError(f"image slot directory {directory} must be owned by UID {os.geteuid()} and writable "
                        f"only by it (it is UID {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); "
                        "remove it or set " + ENV_DIR)


def slot_path(directory: Path, index: int) -> Path:
    return directory / f"slot-{index}"


@dataclass
class Slot:
    """One held slot; ``release()`` (or the end of the process) frees it."""

    index: int
    count: int
    path: Path
    fd: Optional[int]
    waited: float = 0.0  # seconds spent waiting for it

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody waits for a holder that is gone
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open(path: Path) -> int:
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise SlotError(f"image slot {path}: cannot open it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SlotError(f"image slot {path} is not a regular file; remove it")
    return fd


def try_acquire(directory, count: int, holder: str = "") -> Optional[Slot]:
    """A free slot of ``slot-1`` .. ``slot-<count>`` in ``directory``, or None when all are held."""
    directory = Path(directory)
    _prepare(directory)
    for index in range(1, max(1, int(count)) + 1):
        path = slot_path(directory, index)
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except OSError as exc:
            os.close(fd)
            raise SlotError(f"image slot {path}: cannot lock it ({exc.strerror or exc})") from None
        text = f"{os.getpid()} {holder} since {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}\n"
        with contextlib.suppress(OSError):  # only informative
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode("utf-8", "surrogateescape"), 0)
        return Slot(index, count, path, fd)
    return None


def holders(directory, count: int) -> List[str]:
    """What the slot files say about their holders (PID, image, since), for the waiting message."""
    found = []
    for index in range(1, max(1, int(count)) + 1):
        try:
            with open(str(slot_path(Path(directory), index)), "rb") as fh:
                text = fh.read(HOLDER_LIMIT).decode("utf-8", "replace").strip()
        except OSError:
            continue
        if text:
            found.append(text)
    return found


def acquire(directory, count: int, holder: str = "", report: Callable[[str], None] = lambda _m: None,
            check: Optional[Callable[[], None]] = None, poll: float = POLL_SECONDS) -> Slot:
    """Wait for a free slot; says once (``report``) that it waits and for whom.

    ``check`` is called before every attempt and may raise to end the wait (a stopped run).
    """
    directory = Path(directory)
    start = time.monotonic()
    said = False
    while True:
        if check is not None:
            check()
        slot = try_acquire(directory, count, holder)
        if slot is not None:
            slot.waited = time.monotonic() - start
            if said:
                report(f"image slot {slot.index} of {count} taken after waiting {slot.waited:.1f} s")
            return slot
        if not said:
            busy = holders(directory, count)
            report(f"waiting for an image slot: all {count} (Runall-jobs: {count}) are in use"
                   + (f" by: {'; '.join(busy)}" if busy else "") + f" ({directory})")
            said = True
        time.sleep(poll)
