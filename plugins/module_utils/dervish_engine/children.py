"""The engine's child processes: rsync dies with the engine, a killed run's leftovers are found and
stopped, and ``runall`` stops its worker threads' images on a signal.

rsync runs in its own process group (a stop reaches a wrapper script's rsync too) with a parent-death
signal (``PR_SET_PDEATHSIG``), so a ``kill -9`` of dervish does not leave it writing into the image.
What still outlives the engine (a wrapper's rsync) is found by dervish's own rsync arguments for the
image and stopped by the next run of the vault before it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from .errors import LockedError


class Interrupted(BaseException):
    """A run stopped from outside its thread (``runall`` on SIGTERM/SIGINT); ``str()`` is the signal."""


class RunControl:
    """Lets ``runall``'s main thread stop the images its worker threads are making.

    A signal is delivered to the main thread only; ``stop()`` terminates every registered run's rsync
    (its process group), and each run then unwinds with ``Interrupted`` and marks its image.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: set = set()
        self.reason: Optional[str] = None

    def register(self, run) -> None:
        with self._lock:
            self._runs.add(run)

    def unregister(self, run) -> None:
        with self._lock:
            self._runs.discard(run)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.reason = self.reason or reason
            runs = list(self._runs)
        for run in runs:
            run.stop_child()

    def check(self) -> None:
        if self.reason:
            raise Interrupted(self.reason)


def writers_of(image_dir: Path) -> List[int]:
    """PIDs of processes with dervish's rsync arguments for this image (``--exclude-from=<image>/exclude``
    and ``<image>/tree``): the rsync of a run, its forked receiver, and any wrapper given them. An
    admin's ``du <image>/tree`` has only one of them and is left alone."""
    marker = os.fsencode(f"--exclude-from={image_dir}/exclude")
    target = os.fsencode(f"{image_dir}/tree")
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if marker in args and target in args:
            pids.append(int(entry))
    return pids


def stop_leftover_writers(image_dir: Path, report: Callable[[str], None], grace: float = 10.0) -> None:
    """Stop what a killed run left writing into its image, before anything else happens in the vault.

    Raises LockedError when they will not die: the vault must not get a second writer.
    """
    pids = writers_of(image_dir)
    if not pids:
        return
    report("processes of the killed run still write into {}: stopping PID {}".format(
        image_dir, ", ".join(map(str, pids))))
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            pids = [pid for pid in pids if alive(pid)]
            if not pids:
                return
            time.sleep(0.05)
    raise LockedError("processes {} of a killed run still write into {} and do not stop; not started".format(
        ", ".join(map(str, pids)), image_dir))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")


_PR_SET_PDEATHSIG = 1


_PRCTL: list = []


def _prctl():
    if not _PRCTL:
        try:
            import ctypes

            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (ImportError, OSError, AttributeError):  # not Linux: the next run's cleanup still applies
            _PRCTL.append(None)
    return _PRCTL[0]


def child_setup_for(parent: int):
    """``preexec_fn`` for rsync and hooks: the child gets SIGTERM when the engine dies, even by SIGKILL.

    The signal follows the thread that started the child; every caller waits for it in that thread.
    """
    prctl = _prctl()
    if prctl is None:
        return None

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the engine died before prctl took effect
            os._exit(143)

    return setup


def process_tree(pid: int) -> List[int]:
    """``pid`` and its descendants, read from /proc (parents first)."""
    children: dict = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def signal_tree(pid: int, sig: int) -> None:
    """Signal a process and everything it started (listed first, so no orphan escapes the list)."""
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, sig)
