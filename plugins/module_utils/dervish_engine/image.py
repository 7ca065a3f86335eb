"""Create one image of a vault: the ``dervish image`` command.

Run sequence: config -> image time and name -> busy check -> exists check -> reference -> expire ->
image slot (waits while ``Runall-jobs:`` images run on this server, see ``slots``) -> lock (stale
lock recovery; a live lock: ``busy``) -> exists check -> reference -> expire ->
mkdir image (0700) + tree -> summary head -> exclude file -> pre-server ->
pre-client -> metadata (``metadata:``, into ``metadata/``) -> rsync (retried while the outcome is
``error``) -> post-client -> post-server -> Metadata + Backup-complete + Status -> hist (good images
only) -> log compression -> index -> chmod -> unlock -> slot freed.

A vault that a live run holds (its lock) is *busy*: ``run()`` returns an ImageResult with status
``busy`` (exit code 3) and writes nothing into the vault. The slot is taken before the vault lock, so
a run that waits for a slot does not make its vault look busy to others; a vault found busy at the
start is reported at once, without waiting for a slot.

Metadata never decides the image's status: a failed ``metadata:`` command, bad output or a write
error is ``Metadata: failed (<reason>)`` in the summary and the log, and the image is as good as its
rsync; a good image without its metadata is a problem line and exit 4, as a failed index is. Items
that failed on the client (the rest was written) are a warning only (see ``metadata_fetch``).

Rules: a run never modifies or deletes an earlier image; a failed image keeps its summary (with a
``Status:`` saying why), its log, its partial tree and mode 0700 and is never used as a reference.
Only when the bank's filesystem is full is the failed image's own partial tree removed, as Dirvish
does, so that a full bank does not stay full and block every later run.
A vault without any image (no hist, no reference) is initialised automatically (full copy).

A bank that cannot take the image (read-only, full, failing) before rsync starts is a ``BankError``:
what this run created is removed again, nothing else is touched. rsync's stderr is read through a
pipe, never a file on the bank, so a full bank is recognised as full. rsync runs in its own process
group and dies with the engine (parent-death signal); the run after a killed one first stops any
process of the killed run still writing into its image.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

from . import hist, lock, rsync, slots
from .children import RunControl, child_setup_for, signal_tree, stop_leftover_writers
from .config import check_image_name, check_local_tree, load_vault
from .errors import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_POST_FAILED,
    FULL_ERRNOS,
    BankError,
    ConfigError,
    DervishError,
    ImageError,
    LockedError,
    os_error_text,
)
from .expire_rules import choose_expire
from .summary import Summary, hook_failure_line, parse_summary, read_summary, render_head, render_tail, status_is_good
from .timespec import format_expire, parse_expire_spec, parse_image_time

if TYPE_CHECKING:
    from . import hooks

INTERRUPTED_STATUS = "error -- interrupted (run killed)"
TEMP_FILES = ("exclude", "fsbuffer", "rsync_error.tmp", "log.tmp")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# modules needed only once rsync has finished (or by hooks): imported while rsync runs, not before it
AFTER_RSYNC_MODULES = (".index", ".hooks", ".space", "gzip", "bz2", "shutil")


@dataclass
class ImageOptions:
    """Command-line choices for one image run (None = take the config's value)."""

    init: bool = False
    image: Optional[str] = None
    image_time: Optional[str] = None
    expire: Optional[str] = None
    reference: Optional[str] = None
    dry_run: bool = False
    extra_config: tuple = ()
    slot_dir: Optional[str] = None  # image slots (see ``slots``); None: $DERVISH_SLOT_DIR or /run/lock/dervish-slots


@dataclass
class Reference:
    """What the new image links against."""

    label: str  # the summary's Reference: field
    image: Optional[str] = None
    tree: Optional[Path] = None
    auto_init: bool = False


SUCCESS, WARNING, ERROR, BUSY, DRY_RUN = "success", "warning", "error", "busy", "dry-run"


@dataclass
class ImageResult:
    """What one image run did; ``as_dict()`` is the plain form (the snapshot module returns it per vault).

    ``status`` is one word: ``success``; ``warning`` (a good image, but rsync warning 24, or a post hook,
    the index or the metadata failed: exit 4); ``error`` (a failed image, never a reference; exit 1);
    ``busy`` (a live run holds the vault: nothing was written to it; exit 3); ``dry-run``.
    ``summary_status`` is the summary's ``Status:`` text (``error (23) -- partial transfer: ...``).
    ``reference`` is the image linked against (None: a full copy). From rsync's ``--stats`` (None
    when rsync printed none): ``files_transferred`` (regular files copied), ``bytes_transferred``
    (file data rsync had to send, its "Literal data": a changed file sent as a delta counts only its
    changed blocks), ``image_bytes`` (the tree's size), ``new_bytes`` (size of the files written
    anew, i.e. what the image added on disk; the rest are hard links). ``duration`` is the run's
    seconds once it had its image slot, ``waited`` the seconds it waited for one. ``error`` is rsync's
    own error line (or the status) of a failed image, the holder of a busy vault, else None.
    ``metadata`` is the summary's ``Metadata:`` value (``none`` without a ``metadata:`` command).
    """

    vault: str
    branch: str
    name: str
    image_dir: Optional[Path]
    status: str
    exit_code: int
    problems: List[str] = field(default_factory=list)
    bank_full: bool = False  # the bank's filesystem filled up: later images into it would fail too
    summary_status: str = ""
    reference: Optional[str] = None
    files_transferred: Optional[int] = None
    bytes_transferred: Optional[int] = None
    image_bytes: Optional[int] = None
    new_bytes: Optional[int] = None
    duration: float = 0.0
    waited: float = 0.0
    error: Optional[str] = None
    metadata: Optional[str] = None

    @property
    def image(self) -> str:
        """The image name (older name of ``name``)."""
        return self.name

    @property
    def good(self) -> bool:
        return self.status in (SUCCESS, WARNING)

    @property
    def busy(self) -> bool:
        return self.status == BUSY

    def as_dict(self) -> dict:
        return {
            "vault": self.vault, "branch": self.branch, "name": self.name,
            "image_dir": str(self.image_dir) if self.image_dir is not None else None,
            "status": self.status, "summary_status": self.summary_status, "exit_code": self.exit_code,
            "problems": list(self.problems), "bank_full": self.bank_full, "reference": self.reference,
            "files_transferred": self.files_transferred, "bytes_transferred": self.bytes_transferred,
            "image_bytes": self.image_bytes, "new_bytes": self.new_bytes, "duration": round(self.duration, 3),
            "waited": round(self.waited, 3), "error": self.error, "metadata": self.metadata,
        }


def status_word(summary_status: Optional[str], exit_code: int) -> str:
    """``success`` / ``warning`` / ``error`` of a finished run (see ImageResult)."""
    if exit_code == EXIT_FAILED or not status_is_good(summary_status):
        return ERROR
    if exit_code == EXIT_POST_FAILED or not (summary_status or "").strip().startswith("success"):
        return WARNING
    return SUCCESS


_STATS = {
    "files_transferred": re.compile(rb"^Number of regular files transferred: ([\d,.']+)$", re.M),
    "bytes_transferred": re.compile(rb"^Literal data: ([\d,.']+) bytes$", re.M),
    "image_bytes": re.compile(rb"^Total file size: ([\d,.']+) bytes$", re.M),
    "new_bytes": re.compile(rb"^Total transferred file size: ([\d,.']+) bytes$", re.M),
}
STATS_TAIL = 1 << 16  # --stats is printed last; retries append further attempts, the last one counts


def rsync_stats(log_path) -> dict:
    """The figures of rsync's ``--stats`` at the end of ``log_path`` (the last attempt's); None when
    missing (``stats`` off, rsync died before printing them, an unreadable log)."""
    try:
        with open(os.fspath(log_path), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - STATS_TAIL))
            tail = fh.read()
    except OSError:
        tail = b""
    found = {}
    for key, rx in _STATS.items():
        values = rx.findall(tail)
        found[key] = int(re.sub(rb"[,.']", b"", values[-1])) if values else None
    return found


def rsync_error_text(err_lines: List[str]) -> Optional[str]:
    """rsync's (or ssh's) own first line naming the cause, from its stderr."""
    for line in err_lines:
        text = rsync.message_text(line)
        if any(rx.search(text) for rx, _condition in rsync.FATAL_PATTERNS) or rsync.CAUSE_LINE.match(line):
            return " ".join(line.split())[:rsync.MAX_DETAIL]
    return None


def _noop(_message: str) -> None:
    return None


def image_is_good(image_dir: Path) -> bool:
    """True when the image has a tree and a summary whose Status is good."""
    if not (image_dir / "tree").is_dir():
        return False
    try:
        info = read_summary(image_dir / "summary")  # refuses a FIFO instead of hanging on it
    except (OSError, DervishError):
        return False
    return info is not None and bool(info.status) and status_is_good(info.status)


def find_reference(vault_dir: Path, branch: str, reference: Optional[str], init: bool) -> Reference:
    """Newest good image of the reference branch (walking its hist from the end), or a named image.

    No good image left of the own branch (no hist, or every image in it gone or failed) -> automatic
    init, a full copy: a vault whose images were all removed by hand must not fail every night.
    """
    ref = reference or branch
    if init:
        return Reference(ref)
    hist_file = hist.hist_path(vault_dir, ref)
    if hist_file.exists():
        for entry in reversed(hist.read(hist_file)):
            candidate = vault_dir / entry.image
            if entry.image and image_is_good(candidate):
                return Reference(entry.image, entry.image, candidate / "tree")
        if ref == branch:
            return Reference(ref, auto_init=True)
        raise ImageError(f"no good image with a tree is left in {hist_file} for reference branch {ref}")
    candidate = vault_dir / ref
    if ref not in ("", ".", "..", "dirvish") and "/" not in ref and candidate.is_dir():
        if not image_is_good(candidate):
            raise ImageError(f"reference image {ref} of vault {vault_dir.name} is not a good image")
        return Reference(ref, ref, candidate / "tree")
    if ref == branch:
        return Reference(ref, auto_init=True)
    raise ImageError(f"no images for reference {ref} found in vault {vault_dir.name} (no {hist_file})")


def recover_interrupted(stale: lock.LockInfo, report: Callable[[str], None], vault_dir: Path) -> None:
    """Mark the image of a killed run as failed and remove its temp files (nothing else).

    Only an image directly inside this vault: a lock file copied from elsewhere must not lead
    to another vault's image being changed.
    """
    report(f"stale lock of PID {stale.pid} (started {stale.started or '?'}) cleared")
    if not stale.image:
        return
    image_dir = Path(stale.image)
    if image_dir.parent.resolve() != Path(vault_dir).resolve() or image_dir.name in ("", "dirvish"):
        report(f"stale lock names {image_dir}, which is not an image of {vault_dir}: left alone")
        return
    stop_leftover_writers(image_dir, report)
    summary_file = image_dir / "summary"
    if not summary_file.is_file():
        return
    text = summary_file.read_text(encoding="utf-8", errors="surrogateescape")
    try:
        has_status = bool(parse_summary(text).status)
    except DervishError:
        has_status = False
    if not has_status:
        with open(str(summary_file), "a", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(("" if text.endswith("\n") or not text else "\n") + f"Status: {INTERRUPTED_STATUS}\n")
        report(f"image {image_dir} marked: {INTERRUPTED_STATUS}")
    for name in TEMP_FILES:
        with contextlib.suppress(FileNotFoundError):
            (image_dir / name).unlink()


class _Log:
    """The image's log on the bank. A full bank must not turn a log line into a crash: the first
    write error is kept (``error``) and later writes are dropped."""

    def __init__(self, fh):
        self.fh = fh
        self.error: Optional[OSError] = None

    def write(self, data: bytes) -> None:
        if self.error is None:
            try:
                self.fh.write(data)
            except OSError as exc:
                self.error = exc

    def flush(self) -> None:
        if self.error is None:
            try:
                self.fh.flush()
            except OSError as exc:
                self.error = exc

    def fileno(self) -> int:
        return self.fh.fileno()

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError as exc:
            self.error = self.error or exc
            with contextlib.suppress(OSError):
                self.fh.close()


def _octal(text, default: int) -> int:
    if text in (None, ""):
        return default
    if isinstance(text, int):
        return text
    try:
        return int(str(text), 8)
    except ValueError:
        return default


def _compress_log(image_dir: Path, mode: Optional[str]) -> Path:
    src = image_dir / "log"
    if mode not in ("gzip", "bzip2") or not src.exists():
        return src
    import bz2
    import gzip
    import shutil

    target = image_dir / ("log.gz" if mode == "gzip" else "log.bz2")
    opener = gzip.open if mode == "gzip" else bz2.open
    with open(str(src), "rb") as fin, opener(str(target), "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    src.unlink()
    return target


def _server_name() -> str:
    return socket.gethostname()


class ImageRun:
    """One image run; ``run()`` returns an ImageResult. Pre-start problems raise DervishError."""

    def __init__(self, master, vault: str, branch: Optional[str] = None, options: Optional[ImageOptions] = None,
                 report: Callable[[str], None] = _noop, now: Optional[datetime] = None, stdout=None,
                 progress: Optional[Callable[[str], None]] = None, control: Optional[RunControl] = None):
        self.master = master
        self.vault = vault
        self.options = options or ImageOptions()
        self.report = report
        self.progress = progress or _noop  # per-attempt lines: for a terminal, not for cron mail
        self.control = control
        self._stop_lock = threading.Lock()
        self.now = now or datetime.now()
        self.stdout = stdout
        self._child = None
        self._child_is_group = True
        self._created = False
        self._metadata_problem: Optional[str] = None
        self._rsync_errors: List[str] = []  # stderr lines of the last rsync attempt
        self._slot: Optional[slots.Slot] = None
        overrides = {}
        if self.options.expire is not None:
            overrides["expire"] = self.options.expire
        if self.options.image is not None:
            overrides["image"] = self.options.image
        if self.options.image_time is not None:
            overrides["image-time"] = self.options.image_time
        if self.options.reference is not None:
            overrides["reference"] = self.options.reference
        self.cfg = load_vault(master, vault, branch, extra_files=self.options.extra_config,
                              overrides=overrides or None)
        self.branch = self.cfg.branch
        if self.cfg.image_temp:
            raise ConfigError(f"vault {vault}: image-temp: ({self.cfg.image_temp}) is not supported by dervish; "
                              "remove it (images are created under their final name)")
        self.image_time = parse_image_time(self.cfg.image_time, self.now) if self.cfg.image_time else self.now
        pattern = self.cfg.image or self.cfg.image_default or "%Y%m%d%H%M%S"
        self.name = check_image_name(self.image_time.strftime(pattern), pattern)
        self.vault_dir = Path(self.cfg.vault_dir)
        self.image_dir = self.vault_dir / self.name
        self.server = _server_name()
        self.local = self.cfg.is_local(self.server)

    # ---------------------------------------------------------------- pieces
    def source(self) -> str:
        return self.cfg.source()

    def expire_fields(self):
        spec, rule = choose_expire(self.cfg.expire, self.cfg.expire_rules, self.cfg.expire_default, self.image_time)
        when = parse_expire_spec(spec, self.image_time) if spec else None
        return spec, rule, format_expire(spec, when)

    def command(self, ref: Reference) -> List[str]:
        return rsync.build_command(self.cfg, self.image_dir, self.source(), ref.tree, remote=not self.local)

    def make_summary(self, ref: Reference, action: List[str], begin: Optional[datetime]) -> Summary:
        _spec, rule, expire_text = self.expire_fields()
        flags = dict(self.cfg.flags)
        flags["init"] = ref.tree is None
        extra = {}
        if self.cfg.summary_mode == "long":
            skip = {"client", "tree", "rsh", "vault", "branch", "image", "image-temp", "reference", "expire",
                    "exclude", "rsync-option", "bank", "Runall", "Runall-jobs", "Dirvish"} | set(flags)
            for key, value in sorted(self.cfg.options.items()):
                if key not in skip and value not in (None, "", []):
                    extra[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
            extra["Configfiles"] = [str(p) for p in self.cfg.config_files]
        return Summary(
            client=self.cfg.client,
            tree=self.cfg.tree_spec or self.cfg.tree,
            rsh=self.cfg.rsh,
            server=self.server,
            bank=str(self.cfg.bank),
            vault=self.cfg.vault,
            branch=self.branch,
            image=self.name,
            reference=ref.label,
            image_now=self.image_time.strftime(TIME_FORMAT),
            expire=expire_text,
            expire_rule=rule,
            excludes=list(self.cfg.excludes or ()),
            rsync_options=list(self.cfg.rsync_options or ()),
            set_flags=[k for k, v in flags.items() if v],
            unset_flags=[k for k, v in flags.items() if not v],
            extra=extra,
            action=shlex.join(action),
            backup_begin=begin.strftime(TIME_FORMAT) if begin else None,
        )

    def hook_context(self) -> hooks.HookContext:
        from . import hooks

        return hooks.HookContext(
            server=self.server, client=self.cfg.client, src=self.cfg.tree,
            dest=str(self.image_dir / "tree"), image=f"{self.cfg.vault}:{self.branch}:{self.name}",
            exclude=str(self.image_dir / "exclude") if self.cfg.excludes else "",
            rsh=rsync.bounded_rsh(self.cfg.rsh or "ssh", self.cfg.rsync_timeout), local_client=self.local,
            image_time=self.image_time)

    def check_local_tree(self) -> None:
        """A local tree can be checked before anything is created (a remote one only by rsync)."""
        if not self.local:
            return
        try:
            check_local_tree(self.cfg.client, self.cfg.tree)
        except ConfigError as exc:
            raise ConfigError(f"vault {self.cfg.vault}: {exc.message}; nothing was backed up") from None

    def _take_free_name(self) -> None:
        """Branches of one vault share its directory: when the image name made from the pattern is an
        image of another branch (``runall`` of ``v`` and ``v:weekly`` in the same second, or a daily
        pattern), this branch's image is ``<name>-<branch>``. A name given with ``--image`` is not changed."""
        if self.options.image is not None or not self.image_dir.exists():
            return
        try:
            other = parse_summary((self.image_dir / "summary").read_text(encoding="utf-8",
                                                                         errors="surrogateescape")).branch
        except (OSError, DervishError):
            return
        if not other or other == self.branch:
            return
        name = check_image_name(f"{self.name}-{self.branch}")
        self.report(f"image {self.name} belongs to branch {other}: this image is {name}")
        self.name = name
        self.image_dir = self.vault_dir / name

    # ---------------------------------------------------------------- main
    def dry_run(self) -> ImageResult:
        ref = find_reference(self.vault_dir, self.branch, self.cfg.reference,
                             self.options.init or bool(self.cfg.flags.get("init")))
        summary = self.make_summary(ref, self.command(ref), None)
        text = render_head(summary)
        if self.stdout is not None:
            self.stdout.write(text)
        return ImageResult(self.cfg.vault, self.branch, self.name, None, DRY_RUN, EXIT_OK, summary_status=DRY_RUN,
                           reference=ref.image)

    def busy_result(self, holder: str) -> ImageResult:
        """The vault is being imaged by a live run: nothing was done to it."""
        return ImageResult(self.cfg.vault, self.branch, self.name, None, BUSY, EXIT_LOCKED,
                           summary_status=f"{BUSY} -- {holder}", error=holder)

    def run(self) -> ImageResult:
        self.check_local_tree()
        if self.options.dry_run:
            return self.dry_run()
        holder = lock.live_holder(self.vault_dir, self.cfg.vault)
        if holder:  # at once, before waiting for a slot or judging the name a live run may be using
            return self.busy_result(holder)
        self._take_free_name()
        if self.image_dir.exists():
            raise ImageError(f"image {self.name} already exists in vault {self.cfg.vault}")
        if self.control is None:
            return self._run()
        self.control.check()
        self.control.register(self)
        try:
            return self._run()
        finally:
            self.control.unregister(self)

    def _find_reference(self) -> Reference:
        return find_reference(self.vault_dir, self.branch, self.cfg.reference,
                              self.options.init or bool(self.cfg.flags.get("init")))

    def _take_slot(self) -> slots.Slot:
        count = max(1, int(getattr(self.master, "jobs", 1) or 1))
        check = self.control.check if self.control is not None else None
        return slots.acquire(slots.slot_dir(self.options.slot_dir), count,
                             f"{self.cfg.vault}:{self.branch} image {self.name}", report=self.report, check=check)

    def _run(self) -> ImageResult:
        # a configuration that cannot work fails now, not after waiting for a slot (checked again below)
        self._find_reference()
        self.expire_fields()
        slot = self._slot = self._take_slot()
        try:
            started = time.monotonic()
            result = self._run_in_slot()
            result.duration = time.monotonic() - started
            result.waited = slot.waited
            return result
        finally:
            slot.release()

    def _run_in_slot(self) -> ImageResult:
        try:
            stale = lock.acquire(self.vault_dir, self.cfg.vault, self.image_dir, datetime.now())
        except LockedError as exc:  # taken while this run waited for its slot
            return self.busy_result(str(exc))
        except OSError as exc:
            raise BankError(self.cfg.bank, exc, f"take the lock of vault {self.cfg.vault}") from None
        try:
            if stale is not None:
                try:
                    recover_interrupted(stale, self.report, self.vault_dir)
                except LockedError as exc:  # a killed run's writers will not stop: still busy
                    return self.busy_result(str(exc))
                except OSError as exc:
                    raise BankError(self.cfg.bank, exc, "mark the image of a killed run") from None
            if self.image_dir.exists():
                raise ImageError(f"image {self.name} already exists in vault {self.cfg.vault}")
            ref = self._find_reference()
            self.expire_fields()  # reject a bad expire spec before anything is created
            try:
                return self._run_locked(ref)
            except BaseException as exc:
                self._abort(exc)
                raise
        finally:
            with contextlib.suppress(OSError):  # a bank gone read-only meanwhile: the lock is stale later
                lock.release(self.vault_dir)

    def _create(self, ref: Reference, argv: List[str]):
        """Image directory, tree, summary head, exclude file and log; on a bank that cannot take them,
        everything this created is removed again (it holds nothing else) and BankError is raised."""
        image_dir = self.image_dir
        try:
            try:
                image_dir.mkdir(mode=0o700)
            except FileExistsError:
                raise ImageError(f"image {self.name} already exists in vault {self.cfg.vault}") from None
            self._created = True
            os.chmod(str(image_dir), 0o700)
            (image_dir / "tree").mkdir()
            summary = self.make_summary(ref, argv, datetime.now())
            (image_dir / "summary").write_text(render_head(summary), encoding="utf-8", errors="surrogateescape")
            (image_dir / "exclude").write_text("".join(f"{e}\n" for e in self.cfg.excludes or ()), encoding="utf-8")
            log = _Log(open(str(image_dir / "log"), "ab"))  # noqa: SIM115 - closed by _run_locked
        except OSError as exc:
            if self._created:
                import shutil

                shutil.rmtree(str(image_dir), ignore_errors=True)
                self._created = False
            raise BankError(self.cfg.bank, exc, f"create image {self.name} of vault {self.cfg.vault}") from None
        return summary, log

    def _run_locked(self, ref: Reference) -> ImageResult:
        image_dir = self.image_dir
        argv = self.command(ref)
        summary, log = self._create(ref, argv)
        problems: List[str] = []
        failures: List[str] = []
        ctx = None
        outcome = None
        status = None
        try:
            slot = self._slot
            if slot is not None and slot.waited >= slots.POLL_SECONDS:
                log.write((f"dervish: waited {slot.waited:.1f} s for image slot {slot.index} of {slot.count} "
                           "(Runall-jobs:)\n").encode())
            if ref.auto_init:
                msg = f"no good image of branch {self.branch}: initialising vault {self.cfg.vault} (full copy)"
                log.write((f"NOTE: {msg}\n").encode())
                self.report(msg)
            for name in ("pre-server", "pre-client"):
                command = getattr(self.cfg, name.replace("-", "_"))
                if not command:
                    continue
                from . import hooks

                ctx = ctx or self.hook_context()
                code = hooks.run_hook(name, command, ctx, log, run_child=self._run_child)
                if code:
                    failures.append(hook_failure_line(name, code))
                    status = f"error -- {failures[-1]}"
                    break
            if status is None:
                summary.metadata = self._metadata(log)
                outcome = self._rsync(argv, log)
                status = outcome.status
                hook_status = outcome.hook_status
                post = ("post-client", "post-server")
            else:
                hook_status = "fail"
                post = ("post-server",) if failures[0].startswith("pre-client") else ()
            for name in post:
                command = getattr(self.cfg, name.replace("-", "_"))
                if not command:
                    continue
                from . import hooks

                ctx = ctx or self.hook_context()
                code = hooks.run_hook(name, command, ctx, log, status=hook_status, run_child=self._run_child)
                if code:
                    failures.append(hook_failure_line(name, code))
        finally:
            log.close()
        write_errors = [log.error] if log.error is not None else []
        if log.error is not None:
            problems.append(f"the log is incomplete ({os_error_text(log.error)})")
        summary.hook_failures = failures
        stats = rsync_stats(image_dir / "log") if outcome is not None else {}
        if status_is_good(status):  # recorded now, so that status never has to walk the bank
            from . import space

            summary.image_bytes, summary.image_new_bytes = space.from_rsync_log(image_dir / "log")
        summary.backup_complete = datetime.now().strftime(TIME_FORMAT)
        summary.status = status
        good = status_is_good(status)
        try:
            with open(str(image_dir / "summary"), "a", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(render_tail(summary))
        except OSError as exc:
            write_errors.append(exc)
            problems.append(f"cannot write the summary's Status ({os_error_text(exc)}): the image is not marked "
                            "and is never a reference")
            good = False
        self._remove_temp()
        exit_code = EXIT_OK
        if good:
            hist_file = hist.hist_path(self.vault_dir, self.branch)
            try:
                hist.append(hist_file, self.name, datetime.now(), ref.label, summary.expire or "Never")
            except OSError as exc:
                write_errors.append(exc)
                problems.append(f"cannot record the image in {hist_file} ({os_error_text(exc)}): "
                                "it is not used as a reference")
                exit_code = EXIT_FAILED
            try:
                _compress_log(image_dir, self.cfg.log)
            except OSError as exc:
                write_errors.append(exc)
                problems.append(f"log compression failed ({os_error_text(exc)}): the log is kept uncompressed")
                for name in ("log.gz", "log.bz2"):
                    if (image_dir / "log").exists():
                        with contextlib.suppress(OSError):
                            (image_dir / name).unlink()
            if self._metadata_problem:
                problems.append(self._metadata_problem)
            if self.cfg.index and self.cfg.index not in ("none", "no"):
                from . import index

                try:
                    index.build_index(image_dir, self.cfg.tree_alias or self.cfg.tree, self.cfg.index)
                except (DervishError, OSError) as exc:
                    problems.append(f"index failed: {exc}")
            self._chmod_meta()
            os.chmod(str(image_dir), _octal(self.cfg.image_perm, 0o755))
            if (failures or problems) and exit_code == EXIT_OK:
                exit_code = EXIT_POST_FAILED
        else:
            self._chmod_meta()
            exit_code = EXIT_FAILED
        full = (outcome is not None and outcome.message == rsync.FILESYSTEM_FULL) or any(
            exc.errno in FULL_ERRNOS for exc in write_errors)
        problems = failures + problems
        word = status_word(status, exit_code)
        error = None
        if word == ERROR:
            error = (rsync_error_text(self._rsync_errors) if outcome is not None and not outcome.good else None) \
                or (problems[0] if status_is_good(status) and problems else status)
        return ImageResult(
            self.cfg.vault, self.branch, self.name, image_dir, word, exit_code, problems, full,
            summary_status=status, reference=ref.image, files_transferred=stats.get("files_transferred"),
            bytes_transferred=stats.get("bytes_transferred"),
            image_bytes=summary.image_bytes if summary.image_bytes is not None else stats.get("image_bytes"),
            new_bytes=summary.image_new_bytes if summary.image_new_bytes is not None else stats.get("new_bytes"),
            error=error, metadata=summary.metadata)

    def _metadata(self, log) -> str:
        """The client's restore metadata into ``metadata/``; the summary's ``Metadata:`` value."""
        if not self.cfg.metadata:
            return "none"
        from . import metadata_fetch

        if self.control is not None:
            self.control.check()
        log.write((f"Metadata: {self.cfg.metadata}\n").encode("utf-8", "surrogateescape"))
        log.flush()
        self.progress(f"{self.cfg.vault}:{self.branch}: metadata")

        def started(proc) -> None:
            with self._stop_lock:
                self._child, self._child_is_group = proc, True  # its own session, as rsync
            if self.control is not None and self.control.reason:
                self.stop_child()

        result = metadata_fetch.fetch(self.cfg.metadata, self.cfg.client,
                                      rsync.bounded_rsh(self.cfg.rsh or "ssh", self.cfg.rsync_timeout),
                                      self.local, self.image_dir, started=started)
        with self._stop_lock:
            self._child = None
        if self.control is not None:
            self.control.check()
        if result.stderr:
            log.write(result.stderr if result.stderr.endswith(b"\n") else result.stderr + b"\n")
        text = metadata_fetch.summary_value(result.text)
        log.write((f"Metadata: {text}\n").encode("utf-8", "surrogateescape"))
        log.flush()
        if not result.ok:
            self._metadata_problem = f"metadata {text}: the image has no metadata/"
        elif result.failed_items:
            self.report(f"{self.cfg.vault}:{self.branch}: warning: metadata of image {self.name} lacks the items "
                        f"that failed on the client: {', '.join(result.failed_items)}")
        return text

    def _rsync(self, argv: List[str], log) -> rsync.RsyncOutcome:
        log.write((f"ACTION: {shlex.join(argv)}\n").encode("utf-8", "surrogateescape"))
        log.flush()
        env = dict(os.environ)
        if not self.local and self.cfg.rsh:
            env["RSYNC_RSH"] = rsync.bounded_rsh(self.cfg.rsh, self.cfg.rsync_timeout)
        if self.cfg.excludes:
            env["DIRVISH_EXCLUDE"] = str(self.image_dir / "exclude")
        outcome = None
        for cycle in range(rsync.MAX_ATTEMPTS):
            if self.control is not None:
                self.control.check()
            self.progress(f"{self.cfg.vault}:{self.branch}: rsync attempt {cycle + 1}")
            code, err_lines = self._run_rsync_once(argv, env, log)
            self._rsync_errors = err_lines
            if self.control is not None:
                self.control.check()
            outcome = rsync.classify(code, err_lines)
            if outcome.message == rsync.FILESYSTEM_FULL:
                self._drop_partial_tree(log)  # first: the lines below need some of the space it frees
            if err_lines:
                self._save_errors(cycle, err_lines)
            if outcome.warnings or outcome.errors:
                log.write(b"RESULTS: warnings = %d, errors = %d\n" % (outcome.warnings, outcome.errors))
            if not outcome.retry:
                break
        return outcome

    def _save_errors(self, cycle: int, err_lines: List[str]) -> None:
        try:
            with open(str(self.image_dir / "rsync_error"), "a", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(rsync.execution_header(cycle))
                fh.write("".join(line + "\n" for line in err_lines))
        except OSError as exc:
            self.report(f"{self.cfg.vault}:{self.branch}: cannot write rsync_error ({os_error_text(exc)})")

    def _drop_partial_tree(self, log) -> None:
        """A full bank: this run's partial tree goes (it is never a reference), so the space it took
        is free again for expire and the next run; earlier images are not touched."""
        import shutil

        shutil.rmtree(str(self.image_dir / "tree"), ignore_errors=True)
        log.write(b"dervish: the bank's filesystem is full: this image's partial tree was removed\n")
        self.report(f"{self.cfg.vault}:{self.branch}: bank full, partial tree of image {self.name} removed")

    def _run_rsync_once(self, argv: List[str], env, log):
        try:
            # own process group: a stop reaches a wrapper's rsync too; and rsync dies with the engine
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, preexec_fn=child_setup_for(os.getpid()))
        except OSError as exc:
            hint = " (the rsync command line is longer than the kernel allows: an over-long rsync-option?)" \
                if exc.errno == errno.E2BIG else ""
            return (127 if exc.errno == errno.ENOENT else 126), [
                f"dervish: cannot run {argv[0]}: {exc.strerror or exc}{hint}"]
        with self._stop_lock:
            self._child, self._child_is_group = proc, True
        if self.control is not None and self.control.reason:
            self.stop_child()
        errors = rsync.ErrorCollector(proc.stderr)
        reader = threading.Thread(target=errors.run, name="rsync-stderr", daemon=True)
        reader.start()
        for name in AFTER_RSYNC_MODULES:  # rsync's output waits in the pipe meanwhile
            importlib.import_module(name, __package__)
        write = log.write
        keep = rsync.keep_log_line
        for line in proc.stdout:
            if keep(line):
                write(line)
        proc.stdout.close()
        code = proc.wait()
        reader.join()
        log.flush()
        if code < 0:
            code = 128 - code
        return code, errors.result()

    def _run_child(self, argv: List[str], **popen_args) -> int:
        """Run a hook so that a stop of the run stops it and what it started. It stays in the engine's
        process group, where a signal to the whole nightly run reaches it too; its shell gets SIGTERM
        when the engine dies."""
        proc = subprocess.Popen(argv, preexec_fn=child_setup_for(os.getpid()), **popen_args)
        with self._stop_lock:
            self._child, self._child_is_group = proc, False
        if self.control is not None and self.control.reason:
            self.stop_child()
        code = proc.wait()
        if self.control is not None:
            self.control.check()
        return code

    def stop_child(self, sig: int = signal.SIGTERM) -> None:
        """Signal rsync's process group (a wrapper script and its rsync alike), or a hook's process tree."""
        with self._stop_lock:
            child = self._child
            if child is None or child.returncode is not None:
                return
            if not self._child_is_group:
                signal_tree(child.pid, sig)
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, sig)

    def _abort(self, exc: BaseException) -> None:
        """The run died (signal, internal error): stop rsync, mark the image, keep everything else."""
        child = self._child
        if child is not None and child.poll() is None:
            self.stop_child()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.stop_child(signal.SIGKILL)
                child.wait()
        if not self._created:
            return
        summary_file = self.image_dir / "summary"
        try:
            text = summary_file.read_text(encoding="utf-8", errors="surrogateescape")
            if parse_summary(text).status:
                return
            if isinstance(exc, Exception):
                reason = f"internal error: {exc}"
            elif isinstance(exc, KeyboardInterrupt):
                reason = "interrupted (SIGINT)"
            else:
                reason = f"interrupted ({exc or type(exc).__name__})"
            with open(str(summary_file), "a", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(("" if text.endswith("\n") or not text else "\n") + f"Status: error -- {reason}\n")
            self._remove_temp()
        except (OSError, DervishError):
            pass

    def _remove_temp(self) -> None:
        for name in TEMP_FILES:
            with contextlib.suppress(FileNotFoundError):
                (self.image_dir / name).unlink()

    def _chmod_meta(self) -> None:
        if not self.cfg.meta_perm:
            return
        mode = _octal(self.cfg.meta_perm, 0o600)
        for name in ("summary", "log", "log.gz", "log.bz2", "rsync_error", "index", "index.gz", "index.bz2"):
            path = self.image_dir / name
            if path.exists():
                os.chmod(str(path), mode)


def make_image(master, vault: str, branch: Optional[str] = None, options: Optional[ImageOptions] = None,
               report: Callable[[str], None] = _noop, stdout=None, progress: Optional[Callable[[str], None]] = None,
               control: Optional[RunControl] = None) -> ImageResult:
    """Create one image (see the module docstring); raises DervishError before anything is created."""
    return ImageRun(master, vault, branch, options, report, stdout=stdout, progress=progress, control=control).run()
