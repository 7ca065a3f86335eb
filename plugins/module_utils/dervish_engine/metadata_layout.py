"""The restore-metadata layout: ``<image>/metadata/`` beside ``tree/``, one file per item plus ``metadata.json``.

The one writer of the layout: the server's engine writes it into every image whose vault sets
``metadata:`` (``image.py``), and the module ``dervish.backup.host_metadata`` writes it to its ``dest``;
both from a collection as the client's ``dervish-metadata`` prints it (``dervish_metadata.py``, which
collects and documents every item and does not import this module, so it stays one file on the client).

Files (only for items whose status is ``ok``; a ``failed`` item's output is only in ``metadata.json``):
``lsblk.json``, ``sfdisk/<disk>.dump`` (sfdisk's output unchanged: ``sfdisk /dev/NEW < sda.dump``
recreates the table), ``blkid.txt``, ``df.txt``, ``fstab``, ``crypttab``, ``mounts``, ``swaps``,
``mdstat``, ``mdadm.conf``, ``lvm.json`` (pvs, vgs, lvs), ``efibootmgr.txt``, ``debconf-grub-pc.txt``,
``boot.json``, ``os-release``, ``uname.txt``, ``hostname``, ``packages.txt``, and ``metadata.json``
(the whole collection: ``{"format": 1, "collected_at", "disks", "boot", "items": {name: {command,
source, rc, status, output, stderr, data}}}``).

The directory is mode 0700, its files 0600. It is written into a temporary sibling directory and
renamed into place, so it is either the old or the new complete set, never half written.

A collection read from a client is untrusted input: ``parse_collection`` bounds its size, checks its
structure and types, and accepts only item and disk names that are plain file names (``sfdisk/<disk>``
for partition tables), so that nothing is ever written outside the layout directory.

Stdlib only, Python 3.9+; this file is part of the engine (``dervish_engine/*.py`` is what the
server gets).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

# the collector's vocabulary (dervish_metadata.py defines the same values; a unit test pins them)
FORMAT_VERSION = 1
OK = "ok"
FAILED = "failed"
TOOL_MISSING = "skipped: tool missing"
NOT_PRESENT = "skipped: not present"
STATUSES = (OK, FAILED, TOOL_MISSING, NOT_PRESENT)

# name of an item -> file name in the layout (sfdisk/<disk> items are added per disk)
LAYOUT_FILES = {
    "lsblk": "lsblk.json",
    "blkid": "blkid.txt",
    "df": "df.txt",
    "fstab": "fstab",
    "crypttab": "crypttab",
    "mounts": "mounts",
    "swaps": "swaps",
    "mdstat": "mdstat",
    "mdadm": "mdadm.conf",
    "efibootmgr": "efibootmgr.txt",
    "grub-pc": "debconf-grub-pc.txt",
    "os-release": "os-release",
    "uname": "uname.txt",
    "hostname": "hostname",
    "packages": "packages.txt",
}
METADATA_JSON = "metadata.json"
LVM_JSON = "lvm.json"
BOOT_JSON = "boot.json"
METADATA_DIR = "metadata"
# a real collection is well under 2 MiB (packages.txt and the JSON copies of it dominate)
MAX_BYTES = 32 * 1024 * 1024
MAX_NAME = 255


class MetadataError(Exception):
    """A user-facing error: an unwritable destination, or a collection that is not valid."""


# ---------------------------------------------------------------------------------- untrusted input
def _check_file_name(what: str, name: Any) -> None:
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or name.startswith(".")
            or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME or any(not c.isprintable() for c in name)):
        raise MetadataError(f"{what} {name!r} is not a file name (expected no '/', no leading '.', printable)")


def check_item_name(name: Any) -> None:
    """An item name is a plain file name, or ``sfdisk/<disk>`` with a plain disk name."""
    if isinstance(name, str) and name.startswith("sfdisk/"):
        _check_file_name("disk of item", name[len("sfdisk/"):])
    else:
        _check_file_name("item name", name)


def _check_strings(value: Any, where: str) -> None:
    """Every string must be writable as the file it becomes (no lone surrogates outside surrogateescape)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            try:
                current.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise MetadataError(f"{where}: a string is not valid text") from None
        elif isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


_ITEM_TYPES = {"status": (str,), "output": (str,), "stderr": (str,), "command": (list, type(None)),
               "source": (str, type(None)), "rc": (int, type(None))}


def check_collection(data: Any) -> Dict[str, Any]:
    """``data`` if it is a collection as ``dervish-metadata`` prints it; MetadataError saying what is wrong."""
    if not isinstance(data, dict):
        raise MetadataError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT_VERSION or isinstance(data.get("format"), bool):
        raise MetadataError(f"unsupported format {data.get('format')!r} (expected {FORMAT_VERSION})")
    items = data.get("items")
    if not isinstance(items, dict):
        raise MetadataError("'items' is not an object")
    for name, item in items.items():
        check_item_name(name)
        if not isinstance(item, dict):
            raise MetadataError(f"item {name}: not an object")
        for key, types in _ITEM_TYPES.items():
            if key in item and (not isinstance(item[key], types) or isinstance(item[key], bool)):
                raise MetadataError(f"item {name}: '{key}' has the wrong type ({type(item[key]).__name__})")
        if item.get("status") not in STATUSES:
            raise MetadataError(f"item {name}: unknown status {item.get('status')!r}")
        if item["status"] == OK and "output" not in item:
            raise MetadataError(f"item {name}: no 'output'")
    disks = data.get("disks", [])
    if not isinstance(disks, list):
        raise MetadataError("'disks' is not a list")
    for disk in disks:
        _check_file_name("disk", disk)
    if not isinstance(data.get("boot", {}), dict):
        raise MetadataError("'boot' is not an object")
    if not isinstance(data.get("collected_at", ""), str):
        raise MetadataError("'collected_at' is not a string")
    _check_strings(data, "collection")
    return data


def parse_collection(raw: bytes, limit: int = MAX_BYTES) -> Dict[str, Any]:
    """The collection in ``raw`` (a client's ``dervish-metadata`` output), checked; MetadataError if not."""
    if len(raw) > limit:
        raise MetadataError(f"output larger than {limit} bytes")
    if not raw.strip():
        raise MetadataError("no output")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MetadataError(f"output is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise MetadataError(f"output is not JSON ({exc})") from None
    except RecursionError:
        raise MetadataError("output is nested too deeply") from None
    return check_collection(data)


def failed_items(data: Dict[str, Any]) -> List[str]:
    return sorted(name for name, item in (data.get("items") or {}).items() if item.get("status") == FAILED)


# ------------------------------------------------------------------------------------------- layout
def render_files(collected: Dict[str, Any]) -> Dict[str, bytes]:
    """The layout's files (relative name -> content) for a collection as ``Collection.to_dict()``."""
    items = collected.get("items") or {}
    files: Dict[str, bytes] = {}

    def text(data: str) -> bytes:
        return data.encode("utf-8", "surrogateescape")

    for name, item in items.items():
        if item.get("status") != OK:
            continue
        if name.startswith("sfdisk/"):
            disk = name.split("/", 1)[1]
            if disk and "/" not in disk and not disk.startswith("."):
                files[f"sfdisk/{disk}.dump"] = text(item["output"])
        elif name in LAYOUT_FILES:
            files[LAYOUT_FILES[name]] = text(item["output"])
    lvm = {kind: items[kind]["data"] for kind in ("pvs", "vgs", "lvs")
           if (items.get(kind) or {}).get("status") == OK}
    if lvm:
        files[LVM_JSON] = text(json.dumps(lvm, indent=2, sort_keys=True) + "\n")
    files[BOOT_JSON] = text(json.dumps(collected.get("boot") or {}, indent=2, sort_keys=True) + "\n")
    files[METADATA_JSON] = text(json.dumps(collected, indent=2, sort_keys=True) + "\n")
    return files


def read_dir(path: str) -> Optional[Dict[str, bytes]]:
    """The files of an existing layout directory (None when it does not exist)."""
    if not os.path.isdir(path):
        return None
    files = {}
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, path)] = handle.read()
    return files


def _comparable(files: Dict[str, bytes]) -> Dict[str, bytes]:
    # the collection time differs on every run; it alone is no change
    out = dict(files)
    if METADATA_JSON in out:
        try:
            data = json.loads(out[METADATA_JSON])
        except ValueError:
            return out
        if isinstance(data, dict):
            data.pop("collected_at", None)
        out[METADATA_JSON] = json.dumps(data, sort_keys=True).encode()
    return out


def layout_changes(collected: Dict[str, Any], path: str) -> Dict[str, str]:
    """What writing ``collected`` as the layout ``path`` would do, by relative file name: ``added``,
    ``changed`` or ``removed`` (``collected_at`` alone is not a change). Empty: nothing to write."""
    try:
        old = read_dir(path)
    except OSError as exc:
        raise MetadataError(f"cannot read existing metadata in {path}: {exc.strerror or exc}") from exc
    new = _comparable(render_files(collected))
    old = _comparable(old or {})
    changes = {}
    for name in sorted(set(old) | set(new)):
        if name not in old:
            changes[name] = "added"
        elif name not in new:
            changes[name] = "removed"
        elif old[name] != new[name]:
            changes[name] = "changed"
    return changes


def write_metadata_dir(collected: Dict[str, Any], path: str) -> List[str]:
    """Write the layout for ``collected`` (a ``Collection.to_dict()``) as directory ``path``.

    The files are written into a new temporary directory beside ``path`` (dirs 0700, files 0600,
    each fsync'd), which is then renamed to ``path``. An existing ``path`` is first renamed aside and
    removed only after the new one is in place. Returns the relative file names written.
    Raises MetadataError naming the path when the parent is missing or not writable.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise MetadataError(f"cannot write metadata to {path}: parent directory {parent} does not exist")
    files = render_files(collected)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.new-", dir=parent)  # mode 0700
    except OSError as exc:
        raise MetadataError(f"cannot write metadata to {path}: {exc.strerror}") from exc
    old = None
    try:
        for rel, content in sorted(files.items()):
            full = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(full), mode=0o700, exist_ok=True)
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "metadata"))
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old and not os.path.lexists(path) and os.path.lexists(os.path.join(old, "metadata")):
            os.rename(os.path.join(old, "metadata"), path)  # put the previous set back
        raise MetadataError(f"cannot write metadata to {path}: {exc.strerror or exc}") from exc
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return sorted(files)
