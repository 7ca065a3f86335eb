"""Run a vault's ``metadata:`` command for an image and write ``<image>/metadata/``.

The command (``dervish-metadata --json`` on a client whose gate allows it) runs

* for a remote client as ``<rsh> <client> <command>``: the same bounded rsh as rsync (ssh gets
  ConnectTimeout/ServerAlive from ``rsync-timeout``), the command passed as one word, so a forced
  command sees exactly the text configured;
* for a local client as ``sh -c <command>``, as a local ``pre-client`` hook runs.

It runs after the pre hooks and right before rsync: the partition tables, LVM and fstab of the moment
the tree is copied from (a layout changed during a long rsync would otherwise be recorded as it was
after the copy, not as the tree saw it).

A client that is down costs the bounded connect timeout here and again in rsync (at most 60 s each):
rsync, not the metadata command, decides whether the image is good.

Its stdout is untrusted (``metadata_layout.parse_collection``): at most ``MAX_BYTES`` are read (more,
and the command is stopped), and the whole run is bounded by ``TIMEOUT`` seconds. Its stderr goes
to the image log (at most ``MAX_STDERR`` bytes). Exit 0 and 1 (some item failed, the JSON is still
printed) are accepted; any other code is a failure.

Never fatal for the image: the result is one ``Metadata:`` summary value -- ``ok``, ``ok (items
failed: a, b)``, ``failed (<reason>)`` -- and the rsync that follows decides the image's status.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from . import metadata_layout as layout
from .children import child_setup_for

TIMEOUT = 600
MAX_STDERR = 64 * 1024
ACCEPTED_CODES = (0, 1)  # dervish-metadata: 1 = some item failed, the JSON is complete


@dataclass
class MetadataResult:
    ok: bool
    text: str  # the summary's Metadata: value
    failed_items: List[str]
    stderr: bytes = b""


def command_argv(command: str, client: str, rsh: Optional[str], local: bool) -> List[str]:
    if local:
        return ["sh", "-c", command]
    return shlex.split(rsh or "ssh") + [client, command]


class _Bounded:
    """Reads a pipe to its end, keeping at most ``limit`` bytes; ``over`` once more arrived."""

    def __init__(self, pipe, limit: int, on_over: Optional[Callable[[], None]] = None):
        self.pipe = pipe
        self.limit = limit
        self.on_over = on_over
        self.chunks: List[bytes] = []
        self.size = 0
        self.over = False

    def run(self) -> None:
        while True:
            chunk = self.pipe.read(65536)
            if not chunk:
                break
            if self.size + len(chunk) > self.limit:
                self.over = True
                if self.on_over is not None:
                    self.on_over()
                    break
                continue
            self.chunks.append(chunk)
            self.size += len(chunk)
        self.pipe.close()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def summary_value(text: str) -> str:
    """One summary line: printable, no ``#`` (the config grammar would cut the value there), bounded."""
    clean = "".join(c if c.isprintable() and c != "#" else " " for c in text)
    return " ".join(clean.split())[:300]


def _one_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    # ssh and the gate put the cause last; the collector's per-item lines come first
    return lines[-1][:200] if lines else ""


def run_command(argv: List[str], *, timeout: int = TIMEOUT, limit: int = layout.MAX_BYTES,
                started: Optional[Callable[[subprocess.Popen], None]] = None):
    """(exit code or None, stdout, stderr, problem) of ``argv``; problem is a reason text or ''."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=child_setup_for(os.getpid()))
    except OSError as exc:
        return None, b"", b"", f"cannot run {argv[0]}: {exc.strerror or exc}"
    if started is not None:
        started(proc)

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    out = _Bounded(proc.stdout, limit, stop)
    err = _Bounded(proc.stderr, MAX_STDERR)
    threads = [threading.Thread(target=reader.run, daemon=True, name=f"metadata-{name}")
               for name, reader in (("stdout", out), ("stderr", err))]
    for thread in threads:
        thread.start()
    problem = ""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop()
        code = proc.wait()
        problem = f"timed out after {timeout}s"
    for thread in threads:
        thread.join(timeout=10)
    if any(thread.is_alive() for thread in threads):  # something the command left behind holds its output
        stop()
        for thread in threads:
            thread.join()
        problem = problem or "output not closed after the command exited"
    if out.over:
        problem = f"output larger than {limit} bytes"
    return code, out.data, err.data, problem


def fetch(command: str, client: str, rsh: Optional[str], local: bool, image_dir: Path, *,
          timeout: int = TIMEOUT, limit: int = layout.MAX_BYTES,
          started: Optional[Callable[[subprocess.Popen], None]] = None) -> MetadataResult:
    """Run ``command``, check its JSON and write ``image_dir/metadata``; never raises for the client's doing."""
    code, out, err, problem = run_command(command_argv(command, client, rsh, local), timeout=timeout,
                                          limit=limit, started=started)
    if not problem and code not in ACCEPTED_CODES:
        detail = _one_line(err)
        problem = f"{shlex.split(command)[0]} exited {code if code >= 0 else 128 - code}" + (
            f": {detail}" if detail else "")
    if not problem:
        try:
            data = layout.parse_collection(out, limit)
        except layout.MetadataError as exc:
            problem = f"invalid output: {exc}"
    if not problem:
        try:
            layout.write_metadata_dir(data, str(image_dir / layout.METADATA_DIR))
        except layout.MetadataError as exc:
            problem = str(exc)
    if problem:
        return MetadataResult(False, f"failed ({problem})", [], err)
    failed = layout.failed_items(data)
    text = "ok" + (f" (items failed: {', '.join(failed)})" if failed else "")
    return MetadataResult(True, text, failed, err)
