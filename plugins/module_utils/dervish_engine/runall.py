"""``dervish runall``: image every ``Runall:`` entry of the master configuration.

Entries run in-process, up to ``jobs`` vaults at a time (threads; the work is done by the rsync child
processes). Entries of the same vault run one after the other in their listed order (they share the
vault lock). Every entry is isolated: an error, even an unexpected exception, fails that entry only.
The exit code is the number of failed entries, capped at 100; a warning image is not a failure.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Dict, List, Optional

from .errors import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, DervishError, LockedError
from .image import ImageOptions, make_image

MAX_EXIT = 100


@dataclass
class EntryResult:
    label: str
    status: str
    exit_code: int

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


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


def run_entry(master, entry, say: Callable[[str], None], report: Callable[[str], None]) -> EntryResult:
    label = entry_label(entry)
    say(f"{label} started")
    try:
        result = make_image(master, entry.vault, entry.branch, ImageOptions(image_time=entry.image_time),
                            report=lambda msg: report(f"{label}: {msg}"))
        status, code = result.status, result.exit_code
        if result.problems:
            status += "; " + "; ".join(result.problems)
    except LockedError as exc:
        status, code = f"locked: {exc}", EXIT_LOCKED
    except DervishError as exc:
        status, code = f"not started: {exc}", EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one vault must never stop the others
        status, code = f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILED
        report(f"{label}: {traceback.format_exc().rstrip()}")
    say(f"{label} done ({status})")
    return EntryResult(label, status, code)


def run_all(master, jobs: Optional[int] = None, dry_run: bool = False, out: Callable[[str], None] = print,
            report: Optional[Callable[[str], None]] = None) -> int:
    """Run every Runall entry; returns the exit code (failed entries, capped at 100)."""
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
    workers = max(1, int(jobs or master.jobs or 1))

    def run_group(group):
        return [run_entry(master, entry, say, report) for entry in group]

    results: List[EntryResult] = []
    with ThreadPoolExecutor(max_workers=min(workers, max(1, len(groups)))) as pool:
        for group_results in pool.map(run_group, groups.values()):
            results.extend(group_results)
    failed = sum(1 for r in results if r.failed)
    return min(failed, MAX_EXIT)
