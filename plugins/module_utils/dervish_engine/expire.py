"""Expiry of images: scan banks, plan what to remove, remove it (the ``dervish expire`` logic).

Rules (Dirvish's ``dirvish-expire`` with its bugs fixed; README "What dervish does differently"):

* only images with a ``summary`` naming ``vault``, ``branch`` and ``Image`` are considered;
  vault and branch come from the summary (as in Dirvish), not from the path;
* an image is *expired* when its ``Expire:`` time is <= ``now``; ``Never`` (or no ``Expire:``) never
  expires; an ``Expire:`` that cannot be parsed keeps the image and is reported in ``problems``, as is
  a summary that cannot be read (a FIFO, a directory, no permission);
* an image is *good* when its Status is ``success`` or a warning, it has ``Backup-complete`` and
  its ``tree/`` exists; the **newest good image of every vault:branch is always kept**, even when
  it is expired (Dirvish kept the *oldest* one, and never counted warnings as good). *Newest* is by
  image time (``Image-now``, the time the name and the expiry were computed from; else
  ``Backup-begin``), not by ``Backup-complete`` as in Dirvish: an image made late with an old
  ``--image-time`` is not kept in place of images whose time is newer;
* a *failed or interrupted* image (Status not good, or no Status/Backup-complete) is kept for
  inspection until its own ``Expire:`` passes, like a good one (it is never a reference, so removing
  it then costs nothing);
* other expired images are removed;
* nothing at all is removed from a vault locked by a live run (``is_busy(vault_dir)``): a running
  backup looks interrupted, and it may be linking against any image of its vault;
* with ``tree_only`` only ``tree/`` is removed (images without a tree are then skipped).

:func:`plan_expiry` is pure (a dry run is just the plan). :func:`apply_plan` checks the lock again,
renames ``summary`` to ``summary.expiring`` (so a deletion cut short never leaves a half-deleted
tree that still looks good to status or locate; the next expire finishes such a leftover), then
deletes ``tree/`` and the image directory, never following symlinks. ``.hist`` files are left alone.

A tree is deleted by GNU ``rm -rf --one-file-system`` at the lowest CPU and I/O priority (``nice -n 19
ionice -c 2 -n 7``: an expire does not slow a backup that runs meanwhile, and is never starved by it),
which deletes faster than Python's ``shutil.rmtree`` and never descends into a filesystem mounted inside
an image; a directory that root cannot write is made writable and the deletion tried once more.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .confgrammar import shorten
from .errors import DervishError
from .summary import Summary, read_summary, status_is_good
from .timespec import parse_expire_field, parse_time


@dataclass
class ImageInfo:
    """One image directory found in a bank.

    ``vault``/``branch``/``name`` come from the summary when it names them, else from the path.
    ``summary`` is None when the directory has no readable summary (not an image of ours).
    ``expire_at`` None = never; ``expire_error`` says why an ``Expire:`` value was not understood.
    ``created`` is the image time (``Image-now``, else ``Backup-begin``/``Backup-complete``).
    ``read_error`` says why a summary that exists could not be read.
    """

    vault: str
    branch: str
    name: str
    path: Path
    summary: Optional[Summary] = None
    status: Optional[str] = None
    expire_at: Optional[datetime] = None
    backup_complete: Optional[datetime] = None
    good: bool = False
    has_tree: bool = False
    created: Optional[datetime] = None
    expire_error: Optional[str] = None
    leftover: bool = False  # an image whose removal was cut short (summary.expiring)
    read_error: Optional[str] = None

    @property
    def managed(self) -> bool:
        """True if the summary names vault, branch and image (else expiry never touches it)."""
        s = self.summary
        return s is not None and bool(s.vault and s.branch and s.image)

    @property
    def complete(self) -> bool:
        """Finished with a good status (a tree may be gone after a ``--tree`` expiry)."""
        return status_is_good(self.status) and self.backup_complete is not None

    @property
    def vault_dir(self) -> Path:
        return self.path.parent

    def sort_key(self):
        """Oldest first by image time; Backup-complete and the name only break ties."""
        return (self.created or datetime.min, self.backup_complete or datetime.min, self.name)


EXPIRING_SUMMARY = "summary.expiring"


def read_image(path: Path) -> ImageInfo:
    """Build an ``ImageInfo`` for one image directory (never raises for odd content)."""
    path = Path(path)
    info = ImageInfo(vault=path.parent.name, branch="", name=path.name, path=path)
    info.has_tree = (path / "tree").is_dir() and not (path / "tree").is_symlink()
    try:
        s = read_summary(path / "summary")
    except (OSError, DervishError) as exc:
        info.read_error = str(exc)
        return info
    if s is None:
        info.leftover = (path / EXPIRING_SUMMARY).is_file()
        return info
    info.summary = s
    info.vault = s.vault or info.vault
    info.branch = s.branch or ""
    info.name = s.image or info.name
    info.status = s.status
    info.backup_complete = parse_time(s.backup_complete)
    info.created = parse_time(s.image_now) or parse_time(s.backup_begin) or info.backup_complete
    try:
        info.expire_at = parse_expire_field(s.expire)
    except DervishError as exc:
        info.expire_error = str(exc)
    info.good = info.complete and info.has_tree
    return info


def _dirs(parent: Path) -> List[Path]:
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    return [e for e in entries if e.is_dir() and not e.is_symlink()]


def scan_images(banks: List[Path], vault: Optional[str] = None) -> List[ImageInfo]:
    """Every image directory ``<bank>/<vault>/<image>/`` (not ``dirvish/``) in the banks.

    With ``vault``, only that vault in the first bank holding it. Symlinked vault or image
    directories are skipped.
    """
    images: List[ImageInfo] = []
    for bank in banks:
        bank = Path(bank)
        if vault is not None:
            vdir = bank / vault
            if vdir.is_dir() and not vdir.is_symlink():
                vault_dirs = [vdir]
            else:
                continue
        else:
            vault_dirs = _dirs(bank)
        for vdir in vault_dirs:
            for idir in _dirs(vdir):
                if idir.name == "dirvish":
                    continue
                images.append(read_image(idir))
        if vault is not None and images:
            break
    return images


@dataclass
class ExpirePlan:
    """What :func:`apply_plan` will do.

    ``remove``: images (or, with ``tree_only``, their trees) to delete, sorted by vault, branch,
    time. ``kept_newest``: expired images kept because each is the newest good image of its
    branch. ``busy``: failed/interrupted images left alone because their vault is locked.
    ``reasons``: str(path) -> why it is removed or kept. ``problems``: one line per image that
    cannot be judged (summary unreadable, ``Expire:`` unparsable); such images are kept.
    ``failed``: filled by apply_plan.
    """

    remove: List[ImageInfo] = field(default_factory=list)
    kept_newest: List[ImageInfo] = field(default_factory=list)
    reasons: Dict[str, str] = field(default_factory=dict)
    busy: List[ImageInfo] = field(default_factory=list)
    now: Optional[datetime] = None
    tree_only: bool = False
    failed: List[ImageInfo] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)


def _default_is_busy(vault_dir: Path) -> bool:
    try:
        from .lock import is_locked
    except ImportError:  # pragma: no cover - lock module missing: assume busy, touch nothing unfinished
        return True
    return is_locked(vault_dir)


def plan_expiry(images: List[ImageInfo], now: datetime, tree_only: bool = False,
                is_busy: Optional[Callable[[Path], bool]] = None) -> ExpirePlan:
    """Decide which images expire at ``now``; pure apart from ``is_busy`` (default: the vault lock)."""
    busy_check = is_busy or _default_is_busy
    busy_cache: Dict[Path, bool] = {}
    plan = ExpirePlan(now=now, tree_only=tree_only)
    groups: Dict[tuple, List[ImageInfo]] = {}

    def vault_busy(im: ImageInfo) -> bool:
        vdir = im.vault_dir
        if vdir not in busy_cache:
            busy_cache[vdir] = bool(busy_check(vdir))
        return busy_cache[vdir]

    def remove(im: ImageInfo, reason: str) -> None:
        if vault_busy(im):
            plan.busy.append(im)
            plan.reasons[str(im.path)] = "kept: its vault is locked by a running backup"
        else:
            plan.remove.append(im)
            plan.reasons[str(im.path)] = reason

    for im in images:
        if im.read_error:
            plan.problems.append(f"{im.read_error}; image kept")
        elif im.managed and im.expire_error:
            plan.problems.append(f"{im.path / 'summary'}: Expire: {shorten(im.summary.expire)} cannot be parsed; "
                                 f"image {im.vault}:{im.branch}:{im.name} kept (expected 'SPEC == YYYY-MM-DD "
                                 "HH:MM:SS' or 'Never')")
        if im.managed:
            groups.setdefault((im.vault, im.branch), []).append(im)
        elif im.leftover and not tree_only:
            remove(im, "left over from an interrupted expire")
    for key in sorted(groups):
        group = sorted(groups[key], key=ImageInfo.sort_key)
        goods = [im for im in group if im.good]
        newest = goods[-1] if goods else None
        for im in group:
            sp = str(im.path)
            expired = im.expire_at is not None and im.expire_at <= now
            if im is newest:
                if expired:
                    plan.kept_newest.append(im)
                    plan.reasons[sp] = f"expired, kept: newest good image of {im.vault}:{im.branch}"
                continue
            if tree_only and not im.has_tree:
                continue
            if not expired:
                continue
            if im.complete:
                remove(im, f"expired {im.expire_at:%Y-%m-%d %H:%M:%S}")
            else:
                what = "failed" if im.status else "unfinished"
                remove(im, f"{what} image, expired {im.expire_at:%Y-%m-%d %H:%M:%S}")
    return plan


def _onerror(func, path, exc_info):
    """rmtree helper: make a read-only directory writable and retry once (non-root runs)."""
    parent = os.path.dirname(path)
    try:
        st = os.lstat(parent)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IWUSR | stat.S_IXUSR)
        func(path)
    except OSError:
        raise exc_info[1] from None


def removal_argv(path, which: Callable[[str], Optional[str]] = shutil.which) -> Optional[List[str]]:
    """The low-priority ``rm -rf --one-file-system`` of ``path`` (None: no ``rm`` here)."""
    rm = which("rm")
    if rm is None:
        return None
    low = ["nice", "-n", "19"] if which("nice") else []
    low += ["ionice", "-t", "-c", "2", "-n", "7"] if which("ionice") else []   # -t: a container may refuse it
    return low + [rm, "-rf", "--one-file-system", "--", str(path)]


def _owner_may_write(path: str, device: int) -> bool:
    """Give a directory on ``device`` owner read, write and search permission; False for anything else."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != device:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
    return True


def _make_writable(top: Path) -> None:
    """Make every directory below ``top`` on its filesystem writable by its owner (top first, each before
    the walk lists it)."""
    device = os.lstat(top).st_dev
    _owner_may_write(str(top), device)
    for here, dirs, _files in os.walk(top):
        dirs[:] = [name for name in dirs if _owner_may_write(os.path.join(here, name), device)]


def remove_tree(path: Path) -> None:
    """Delete ``path`` recursively without following symlinks (a symlink itself is unlinked) or entering
    another filesystem mounted below it (``OSError``: nothing of that filesystem is removed)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
        return
    if not path.exists():
        return
    argv = removal_argv(path)
    if argv is None:
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=lambda func, p, exc: _onerror(func, p, (type(exc), exc, None)))
        else:
            shutil.rmtree(path, onerror=_onerror)
        return
    for attempt in (1, 2):
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
        if proc.returncode == 0 or not os.path.lexists(path):
            return
        if attempt == 1:
            _make_writable(path)   # a read-only directory (rsync copies them so) that root may not write
    lines = proc.stderr.strip().splitlines()
    raise OSError(f"{path} not removed: rm exited {proc.returncode}: {lines[-1] if lines else 'no message'}")


def _stdout_line(message: str) -> None:
    sys.stdout.write(message + "\n")


def apply_plan(plan: ExpirePlan, log: Optional[Callable[[str], object]] = None,
               is_busy: Optional[Callable[[Path], bool]] = None) -> int:
    """Remove what ``plan`` says: ``tree/`` first, then the image directory (unless ``tree_only``).

    The vault lock is checked again right before each image: a backup that started after the plan
    was made keeps its whole vault. Returns the number of images (or trees) removed. Failures are
    logged, collected in ``plan.failed`` and do not stop the other removals. ``log`` gets one
    message per image (default: a line on standard output).
    """
    if log is None:
        log = _stdout_line
    busy_check = is_busy or _default_is_busy
    removed = 0
    for im in plan.remove:
        label = f"{im.vault}:{im.branch}:{im.name}"
        if busy_check(im.vault_dir):
            plan.busy.append(im)
            log(f"kept {label}: its vault is locked by a running backup")
            continue
        try:
            if im.path.is_symlink():
                raise OSError(f"{im.path} is a symlink, not removed")
            if not plan.tree_only and (im.path / "summary").is_file():
                os.rename(str(im.path / "summary"), str(im.path / EXPIRING_SUMMARY))
            remove_tree(im.path / "tree")
            if not plan.tree_only:
                remove_tree(im.path)
        except OSError as exc:
            plan.failed.append(im)
            log(f"cannot remove {label}: {exc}")
            continue
        removed += 1
        log(f"removed {'tree of ' if plan.tree_only else ''}{label}")
    return removed
