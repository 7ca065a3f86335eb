"""Bring files back from an image: ``dervish versions``, ``dervish restore`` and the copy the restore
playbook pushes to a client.

Paths are given as the client knew them (``/home/alice/doc.txt``, under the vault's ``tree:``) or
relative to the vault's tree (``alice/doc.txt``). A path with a ``..`` component, a NUL byte, or outside
the tree is refused, and so is a path that passes through a symlink of the image (``alice`` -> ``/etc``
would make rsync read outside the image): only the last component may be a symlink, and it is copied
as a symlink.

A restore copies with ``rsync -aHAX --numeric-ids --relative -i`` (owners, modes, ACLs, xattrs, hard
links within one copy, symlinks, mtimes; the parent directories of a path get their attributes from the
image too, and are created when missing), from ``<image>/tree/./<path>`` into the target, where a path
lands at ``<target>/<client path>`` (``--to /srv/r`` gets ``/srv/r/home/alice/doc.txt``) or, in place, at
the client path itself. Files in the target that the image lacks are kept unless ``delete``. rsync
never writes outside the target: every name it creates comes from the image below the path, and a
symlink in the target is replaced, not followed (no ``--keep-dirlinks``).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .errors import DervishError
from .expire import ImageInfo
from .select import began, good_images, image_tree
from .timespec import format_time

RSYNC_RESTORE = ("rsync", "-aHAX", "--numeric-ids", "--relative", "--itemize-changes", "--mkpath")


class RestoreError(DervishError):
    """A path cannot be restored (unsafe, outside the tree, missing from the image)."""


class RsyncFailed(RestoreError):
    """The copy itself failed (rsync's exit code and first error lines)."""


def client_tree(image: ImageInfo) -> str:
    """The client directory the image's tree is a copy of (the summary's ``tree:``)."""
    tree = image.summary.tree if image.summary is not None else None
    return posixpath.normpath(tree) if tree and tree.startswith("/") else "/"


def relative_path(path: str, tree: str) -> str:
    """``path`` relative to the vault's ``tree`` ("." for the tree itself); ``RestoreError`` when unsafe.

    An absolute path must lie in ``tree``; a relative one is taken relative to it.
    """
    text = str(path)
    if not text or "\0" in text or "\n" in text:
        raise RestoreError(f"path {text!r}: empty or holds a NUL byte or a newline")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RestoreError(f"path {text!r}: '..' is not allowed (give the path as the client knew it)")
    if text.startswith("/"):
        top = [p for p in tree.split("/") if p]
        if parts[:len(top)] != top:
            raise RestoreError(f"path {text!r} is outside the vault's tree {tree}")
        parts = parts[len(top):]
    return "/".join(parts) or "."


def client_path(tree: str, rel: str) -> str:
    return tree if rel == "." else posixpath.join(tree, rel)


def lstat_in_image(tree_dir: Path, rel: str) -> Optional[os.stat_result]:
    """``lstat`` of ``rel`` in the image's tree, None when absent; ``RestoreError`` when a parent
    component is a symlink or not a directory (the copy would read outside the image)."""
    here = Path(tree_dir)
    parts = [] if rel == "." else rel.split("/")
    for index, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return None
        if index < len(parts) - 1:
            if stat.S_ISLNK(st.st_mode):
                raise RestoreError(f"path {rel}: {'/'.join(parts[:index + 1])} is a symlink in the image; "
                                   "a restore never follows it (restore the link itself, or its target's path)")
            if not stat.S_ISDIR(st.st_mode):
                return None
    return os.lstat(here) if parts else os.lstat(tree_dir)


def file_type(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "char device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "other"


@dataclass
class Version:
    """One good image's copy of the path. ``same_as_newer``: the same inode as in the next newer image
    that has the path (a hard link: unchanged between them); None for the newest."""

    image: str
    begin: str
    type: str
    size: int
    mtime: str
    mode: str
    uid: int
    gid: int
    inode: int
    same_as_newer: Optional[bool] = None


@dataclass
class Versions:
    vault: str
    path: str
    rel: str
    images_searched: int = 0
    versions: List[Version] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def versions(vault_dir, path: str) -> Versions:
    """Every good image (newest first) that has ``path``, with what it is there."""
    vault_dir = Path(vault_dir)
    good = good_images(vault_dir)
    tree = client_tree(good[0]) if good else "/"
    rel = relative_path(path, tree)
    found = Versions(vault_dir.name, client_path(tree, rel), rel, len(good))
    newer_inode = None
    for image in good:
        st = lstat_in_image(image_tree(image), rel)
        if st is None:
            newer_inode = None
            continue
        found.versions.append(Version(
            image=image.name, begin=format_time(began(image)), type=file_type(st.st_mode), size=st.st_size,
            mtime=format_time(datetime.fromtimestamp(int(st.st_mtime))), mode=stat.filemode(st.st_mode),
            uid=st.st_uid, gid=st.st_gid, inode=st.st_ino,
            same_as_newer=None if newer_inode is None else st.st_ino == newer_inode))
        newer_inode = st.st_ino
    return found


def render_versions(found: Versions) -> str:
    lines = [f"{found.path} in vault {found.vault}: {len(found.versions)} of {found.images_searched} good images"]
    rows = [("IMAGE", "BEGIN", "TYPE", "SIZE", "MTIME", "MODE", "SAME AS NEWER")]
    for v in found.versions:
        same = "-" if v.same_as_newer is None else ("yes" if v.same_as_newer else "no")
        rows.append((v.image, v.begin, v.type, str(v.size), v.mtime, v.mode, same))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if found.versions:
        lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Transfer:
    """One rsync: from ``source_base`` (a directory of the image's tree) the paths ``items`` (relative to
    it, each ``<dir>/`` for a directory's contents) into ``dest`` (relative to the target root)."""

    source_base: str
    items: tuple
    dest: str


def _split(rel: str) -> List[str]:
    return [] if rel == "." else rel.split("/")


def plan(tree_dir, tree: str, rels: Sequence[str], where_tree: str, root: str) -> List[Transfer]:
    """The rsyncs that put the image's ``rels`` (relative to its tree, the client's ``tree``) where
    ``where_tree`` (the client directory that stands for the tree: the tree itself in place, else
    ``<dest>/<tree>``) says, below the target ``root`` (an ancestor of every target path). The
    paths must exist in the image and be safe (:func:`lstat_in_image`), else ``RestoreError``."""
    tree_dir = Path(tree_dir)
    transfers: Dict[tuple, List[str]] = {}
    root_parts = [p for p in root.split("/") if p]
    where_parts = [p for p in where_tree.split("/") if p]
    for rel in rels:
        st = lstat_in_image(tree_dir, rel)
        if st is None:
            raise RestoreError(f"{client_path(tree, rel)} is not in the image {tree_dir.parent.name}")
        target_parts = where_parts + _split(rel)
        if target_parts[:len(root_parts)] != root_parts or (len(target_parts) == len(root_parts) and rel != "."):
            raise RestoreError(f"{client_path(tree, rel)}: target /{'/'.join(target_parts)} is not below "
                               f"the target directory {root}")
        if where_parts[:len(root_parts)] == root_parts:  # the tree's place is at or below the root
            base, item, dest = "", rel, "/".join(where_parts[len(root_parts):]) or "."
        else:  # the root lies inside the tree: start the relative names there
            inside = root_parts[len(where_parts):]
            base, item, dest = "/".join(inside), "/".join(_split(rel)[len(inside):]) or ".", "."
        if stat.S_ISDIR(st.st_mode):
            item = item + "/" if item != "." else "./"
        transfers.setdefault((base, dest), []).append(item)
    return [Transfer(base, tuple(items), dest) for (base, dest), items in transfers.items()]


def rsync_argv(tree_dir, transfer: Transfer, destination: str, delete: bool = False, dry_run: bool = False,
               rsh: Optional[str] = None, rsync: str = "rsync") -> List[str]:
    """The rsync command of one transfer; ``destination`` is the target root (``host:`` for a remote
    ``rrsync``, whose root it is) and ``transfer.dest`` is appended to it."""
    argv = [rsync, *RSYNC_RESTORE[1:]]
    if delete:
        argv.append("--delete")
    if dry_run:
        argv.append("--dry-run")
    if rsh:
        argv += ["-e", rsh]
    base = Path(tree_dir) / transfer.source_base if transfer.source_base else Path(tree_dir)
    argv += [f"{base}/./{item}" if item not in ("./",) else f"{base}/./" for item in transfer.items]
    dest = destination if transfer.dest == "." else posixpath.join(destination, transfer.dest)
    argv.append(dest if dest.endswith("/") or dest.endswith(":") else dest + "/")
    return argv


@dataclass
class RestoreResult:
    image: str
    target: str
    changes: List[str] = field(default_factory=list)  # rsync's itemized lines
    commands: List[List[str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(is_change(line) for line in self.changes)


ITEM_RE = re.compile(r"^(\*deleting +|[<>ch.][fdLDS][.+?cstpoguax]{9} )")


def is_change(line: str) -> bool:
    """An itemized line that says something is (or would be) written or deleted, not just "no change"."""
    return bool(ITEM_RE.match(line)) and not (line[0] == "." and set(line[2:11]) <= {"."})


def run_rsync(argv: List[str], out: Optional[Callable[[List[str]], object]] = None) -> List[str]:
    """Run one restore rsync; its itemized lines; ``RestoreError`` with rsync's error when it fails.

    rsync's output goes to unnamed files, not pipes: read through a pipe, its line per file woke this
    process for every line, which cost a restore of 20,000 files about a fifth of rsync's own time."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, check=False)
        stdout.seek(0)
        stderr.seek(0)
        proc.stdout, proc.stderr = stdout.read(), stderr.read()
    lines = [line for line in proc.stdout.decode("utf-8", "backslashreplace").splitlines() if ITEM_RE.match(line)]
    if out is not None and lines:
        out(lines)  # all at once: one write, not one per file
    if proc.returncode not in (0, 24):
        err = proc.stderr.decode("utf-8", "backslashreplace").strip().splitlines()
        raise RsyncFailed(f"rsync exited {proc.returncode}: " + ("; ".join(err[:3]) or "no message"))
    return lines


def restore_local(image: ImageInfo, paths: Sequence[str], to: str, delete: bool = False, dry_run: bool = False,
                  out: Optional[Callable[[List[str]], object]] = None) -> RestoreResult:
    """``dervish restore``: copy ``paths`` of the image into the local directory ``to`` (each at
    ``<to>/<client path>``), created (mode 0700) when missing. ``out`` gets each rsync's itemized lines
    as soon as that rsync ended."""
    target = os.path.abspath(to)
    tree = client_tree(image)
    rels = [relative_path(p, tree) for p in paths]
    where = posixpath.join(target, tree.lstrip("/")) if tree != "/" else target
    transfers = plan(image_tree(image), tree, rels, where, target)
    if not dry_run:  # a dry run needs no target: rsync reports everything as new
        os.makedirs(target, mode=0o700, exist_ok=True)
    result = RestoreResult(image.name, target)
    for transfer in transfers:
        argv = rsync_argv(image_tree(image), transfer, target, delete, dry_run)
        result.commands.append(argv)
        result.changes += run_rsync(argv, out)
    return result
