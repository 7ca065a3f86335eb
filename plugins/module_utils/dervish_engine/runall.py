"""``dervish runall``: image every ``Runall:`` entry of the master configuration.

Entries run in-process, up to ``jobs`` vaults at a time (threads; the work is done by the rsync child
processes). Entries of the same vault run one after the other in their listed order (they share the
vault lock; an image name taken by another branch becomes ``<name>-<branch>``). Every entry is
isolated: an error, even an unexpected exception, fails that entry only. A bank found full (or
read-only, or failing) is not tried again: its later entries are reported as not started.
SIGTERM/SIGINT stop the running images (marked ``error -- interrupted``) and start no more.
The exit code is the number of failed entries, capped at 100; a warning image is not a failure.

Every image takes one of the server's ``Runall-jobs:`` image slots (``slots``), shared with every
other dervish process: ``--jobs`` can lower this run's parallelism, never raise it above the slots.
A vault found *busy* (a live run, e.g. a playbook's snapshot task, holds its lock) is reported as
``busy: ...`` and is not counted as failed: it is being imaged right now, by a run that reports its
own outcome, so a nightly run that meets it does not mail a failure.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Dict, List, Optional

from .children import Interrupted, RunControl
from .config import find_vault_dir
from .errors import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, BankError, DervishError, LockedError, os_error_text
from .image import ImageOptions, make_image

MAX_EXIT = 100


@dataclass
class EntryResult:
    label: str
    status: str
    exit_code: int

    @property
    def busy(self) -> bool:
        return self.exit_code == EXIT_LOCKED

    @property
    def failed(self) -> bool:
        return self.exit_code not in (0, EXIT_LOCKED)


def entry_label(entry) -> str:
    return f"{entry.vault}:{entry.branch}" if entry.branch else entry.vault


def entry_command(entry) -> str:
    text = f"dervish image {entry_label(entry)}"
    if entry.image_time:
        text += f" --image-time '{entry.image_time}'"
    return text


class _Printer:
    """Serialises output lines of the worker threads."""

    def __init__(self, out: Callable[[str], None]):
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self.lock:
            self.out("{} {}".format(datetime.now().strftime("%H:%M:%S"), message))


class _Banks:
    """Banks found unusable during this run, with the reason (shared by the worker threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.broken: Dict[str, str] = {}

    def mark(self, bank: str, reason: str) -> None:
        with self.lock:
            self.broken.setdefault(bank, reason)

    def reason(self, bank: Optional[str]) -> Optional[str]:
        with self.lock:
            return self.broken.get(bank) if bank else None


def _bank_of(master, entry) -> Optional[str]:
    try:
        return str(find_vault_dir(master, entry.vault).parent)
    except DervishError:
        return None  # make_image reports it


def run_entry(master, entry, say: Callable[[str], None], report: Callable[[str], None],
              progress: Optional[Callable[[str], None]] = None, control: Optional[RunControl] = None,
              banks: Optional[_Banks] = None) -> EntryResult:
    label = entry_label(entry)
    banks = banks or _Banks()
    bank = _bank_of(master, entry)
    broken = banks.reason(bank)
    if control is not None and control.reason:
        status, code = f"not started: run interrupted ({control.reason})", EXIT_FAILED
        say(f"{label} done ({status})")
        return EntryResult(label, status, code)
    if broken:
        status, code = f"not started: {broken}", EXIT_USAGE
        say(f"{label} done ({status})")
        return EntryResult(label, status, code)
    say(f"{label} started")
    try:
        result = make_image(master, entry.vault, entry.branch, ImageOptions(image_time=entry.image_time),
                            report=lambda msg: report(f"{label}: {msg}"),
                            progress=(lambda msg: progress(f"{label}: {msg}")) if progress else None,
                            control=control)
        status, code = result.summary_status, result.exit_code
        if result.busy:
            status = f"busy: {result.error}"
        if result.problems:
            status += "; " + "; ".join(result.problems)
        if result.bank_full and bank:
            banks.mark(bank, f"bank {bank} is full ({label}: {result.summary_status})")
    except LockedError as exc:
        status, code = f"busy: {exc}", EXIT_LOCKED
    except BankError as exc:
        status, code = f"not started: {exc}", EXIT_USAGE
        banks.mark(exc.bank, str(exc))
    except DervishError as exc:
        status, code = f"not started: {exc}", EXIT_USAGE
    except Interrupted as exc:
        status, code = f"error -- interrupted ({exc})", EXIT_FAILED
    except OSError as exc:  # the operating system's word, not a bug: no traceback
        status, code = f"failed: {os_error_text(exc)}", EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one vault must never stop the others
        status, code = f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILED
        report(f"{label}: {traceback.format_exc().rstrip()}")
    say(f"{label} done ({status})")
    return EntryResult(label, status, code)


def _signal_name(exc: BaseException) -> str:
    return "SIGINT" if isinstance(exc, KeyboardInterrupt) else (str(exc) or type(exc).__name__)


def run_all(master, jobs: Optional[int] = None, dry_run: bool = False, out: Callable[[str], None] = print,
            report: Optional[Callable[[str], None]] = None,
            progress: Optional[Callable[[str], None]] = None) -> int:
    """Run every Runall entry; returns the exit code (failed entries, capped at 100).

    ``progress`` gets per-attempt lines (give it only for a terminal). A signal in the main thread
    (SIGTERM as ``cli.Terminated``, SIGINT) stops the running images, then propagates.
    """
    say = _Printer(out)
    report = report or say
    entries = list(master.runall)
    if dry_run:
        for entry in entries:
            say(entry_command(entry))
        return 0
    groups: Dict[str, List] = {}
    for entry in entries:
        groups.setdefault(entry.vault, []).append(entry)
    slots = max(1, int(master.jobs or 1))
    workers = min(max(1, int(jobs or slots)), slots)
    if jobs and int(jobs) > slots:
        report(f"--jobs {jobs} is above the server's limit Runall-jobs: {slots}: at most {slots} image(s) at once")
    control = RunControl()
    banks = _Banks()

    def run_group(group):
        return [run_entry(master, entry, say, report, progress, control, banks) for entry in group]

    results: List[EntryResult] = []
    pool = ThreadPoolExecutor(max_workers=min(workers, max(1, len(groups))))
    try:
        futures = [pool.submit(run_group, group) for group in groups.values()]
        for future in futures:
            results.extend(future.result())
    except BaseException as exc:
        # only the main thread gets signals: stop the workers' images, let them mark them, then go
        control.stop(_signal_name(exc))
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    busy = [r.label for r in results if r.busy]
    if busy:
        say(f"busy (being imaged by another run, not counted as failed): {', '.join(busy)}")
    failed = sum(1 for r in results if r.failed)
    return min(failed, MAX_EXIT)
