"""What a bare-metal restore does, from an image's ``metadata/``: the ``DiskPlan`` (pure, no I/O here).

``build_plan(metadata, vaults, image=..., disk=None, grow_last_partition=False, boot_loader="auto")``
takes the collection as ``metadata.json`` holds it (``load_metadata`` reads it) and the client's vaults
(``VaultSource``: name, the client path its tree came from, the server path of the chosen image's tree,
its excludes) and says:

* the source disk (``disk``; by default the disk that holds ``/`` in the fstab, else the only disk with
  a saved partition table) and its ``sfdisk --dump``, rewritten for the target only when the last
  partition is to grow (its ``size=`` and the GPT ``last-lba`` dropped, so it fills a larger disk);
* per partition: number, start/size (sectors), type, its filesystem's type, UUID and label (from
  ``blkid``), its mount point (fstab, resolved by ``UUID=``/``LABEL=``/``PARTUUID=``/device), swap;
* which vault tree goes into which filesystem: the longest mount-point prefix of the vault's tree path,
  at the tree's path below that mount point;
* what backups leave out and the rebuild recreates, as (path on the client, mode): ``/proc /sys /dev
  /run`` 0755 and ``/tmp`` 1777 on the root filesystem, the mount points of the other fstab entries,
  and the anchored excludes of a vault that are mount points on the client (``/tmp``-like ones 1777);
* the boot loader: ``bios`` (grub-install ``--target=i386-pc``), ``efi`` or ``none``. ``auto`` means
  ``efi`` when the client booted by EFI, ``bios`` when debconf says grub-pc was installed on a disk,
  else ``none``.

Errors (``PlanError``) name the image and the missing or odd item. Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import DervishError

BOOT_LOADERS = ("auto", "bios", "efi", "none")
# filesystems the rebuild can make with their saved UUID and label
MKFS_TYPES = ("ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap")
LEFT_OUT = (("/proc", 0o755), ("/sys", 0o755), ("/dev", 0o755), ("/run", 0o755), ("/tmp", 0o1777))
STICKY_DIRS = ("/tmp", "/var/tmp")


class PlanError(DervishError):
    """The metadata cannot say how to rebuild the disk."""


@dataclass(frozen=True)
class VaultSource:
    vault: str
    tree: str            # the client path the vault backs up, e.g. "/" or "/home"
    image_tree: str      # the chosen image's tree/ on the server
    excludes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Partition:
    number: int
    node: str                     # its name in the saved dump, e.g. /dev/sda1
    start: int                    # sectors
    size: int                     # sectors
    type: str
    fstype: Optional[str] = None
    uuid: Optional[str] = None
    label: Optional[str] = None
    mount_point: Optional[str] = None
    options: str = ""             # its fstab mount options

    @property
    def swap(self) -> bool:
        return self.fstype == "swap"


@dataclass(frozen=True)
class Placement:
    vault: str
    tree: str
    image_tree: str
    partition: int
    mount_point: str
    subdir: str          # where the tree goes below the filesystem's root ("" = its root)


@dataclass(frozen=True)
class DiskPlan:
    image: str
    disk: str
    dump: str                      # the saved dump, as saved
    target_dump: str               # what sfdisk gets (the dump, or grown)
    label: str                     # gpt or dos
    sector_size: int
    disk_bytes: int                # the source disk's size: the smallest target
    partitions: Tuple[Partition, ...]
    placements: Tuple[Placement, ...]
    left_out: Tuple[Tuple[str, int], ...]
    boot_loader: str               # bios, efi or none
    firmware: str
    grow_last_partition: bool = False
    fstab: str = ""
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def partition(self, number: int) -> Partition:
        return next(p for p in self.partitions if p.number == number)

    def filesystems(self) -> List[Partition]:
        """Partitions with a filesystem to mount, parents first (by mount-point depth)."""
        mounted = [p for p in self.partitions if p.mount_point and not p.swap]
        return sorted(mounted, key=lambda p: (p.mount_point.rstrip("/").count("/") if p.mount_point != "/" else 0,
                                              p.mount_point))

    def describe(self) -> List[str]:
        """The plan as lines for the operator (check mode prints these)."""
        lines = [f"source disk {self.disk} ({self.label}, {self.disk_bytes} bytes) from {self.image}",
                 "partition table: sfdisk from the saved dump"
                 + (" (last partition grown)" if self.grow_last_partition else "")]
        for p in self.partitions:
            what = p.fstype or "no filesystem"
            tags = ", ".join(x for x in (f"UUID={p.uuid}" if p.uuid else "",
                                         f"LABEL={p.label}" if p.label else "") if x)
            where = " swap" if p.swap else (f" on {p.mount_point}" if p.mount_point else "")
            lines.append(f"partition {p.number}: start {p.start}, {p.size} sectors, {what}"
                         f"{' (' + tags + ')' if tags else ''}{where}")
        for pl in self.placements:
            lines.append(f"copy vault {pl.vault} ({pl.tree}) from {pl.image_tree} into partition {pl.partition}"
                         f" ({pl.mount_point}){' at ' + pl.subdir if pl.subdir else ''}")
        for path, mode in self.left_out:
            lines.append(f"recreate {path} (mode {mode:04o})")
        lines.append(f"boot loader: {self.boot_loader} (client firmware {self.firmware})")
        lines.extend(self.notes)
        return lines

    def as_dict(self) -> Dict[str, Any]:
        return {
            "image": self.image, "disk": self.disk, "label": self.label, "sector_size": self.sector_size,
            "disk_bytes": self.disk_bytes, "boot_loader": self.boot_loader, "firmware": self.firmware,
            "grow_last_partition": self.grow_last_partition,
            "partitions": [{"number": p.number, "start": p.start, "size": p.size, "type": p.type, "fstype": p.fstype,
                            "uuid": p.uuid, "label": p.label, "mount_point": p.mount_point, "swap": p.swap}
                           for p in self.partitions],
            "placements": [pl.__dict__ for pl in self.placements],
            "left_out": [{"path": path, "mode": f"{mode:04o}"} for path, mode in self.left_out],
        }


# ------------------------------------------------------------------------------------------ reading
def load_metadata(metadata_dir: str) -> Dict[str, Any]:
    """``metadata.json`` of an image's ``metadata/`` directory; PlanError naming it when absent or odd."""
    path = os.path.join(metadata_dir, "metadata.json")
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise PlanError(f"{metadata_dir}: no metadata.json: this image has no restore metadata "
                        "(choose an image whose summary says 'Metadata: ok')") from None
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read restore metadata: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), dict):
        raise PlanError(f"{path}: not a dervish-metadata collection (no 'items' object)")
    return data


def _item(data: Dict[str, Any], image: str, name: str, required: bool = True) -> Optional[Dict[str, Any]]:
    item = data["items"].get(name)
    if not isinstance(item, dict) or item.get("status") != "ok":
        if required:
            status = "missing" if item is None else f"status {item.get('status')!r}"
            raise PlanError(f"{image}: metadata item {name} is {status}; a rebuild needs it")
        return None
    return item


_DUMP_LINE = re.compile(r"^(?P<node>\S+)\s*:\s*(?P<fields>.*)$")


def parse_dump(text: str) -> Tuple[Dict[str, str], List[Dict[str, str]]]:
    """``sfdisk --dump``: (header fields, partition lines as {node, start, size, type, uuid, name, ...})."""
    header: Dict[str, str] = {}
    parts: List[Dict[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _DUMP_LINE.match(line)
        if match and match.group("node").startswith("/"):
            fields = {"node": match.group("node")}
            for word in re.findall(r'(\w[\w-]*)=("[^"]*"|[^,]*)|(\bbootable\b)', match.group("fields")):
                key, value, flag = word
                if flag:
                    fields["bootable"] = "1"
                elif key:
                    fields[key] = value.strip().strip('"')
            parts.append(fields)
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    return header, parts


def partition_number(node: str) -> int:
    match = re.search(r"(\d+)$", node)
    if not match:
        raise ValueError(node)
    return int(match.group(1))


def grow_dump(text: str) -> str:
    """The dump with the last partition's size and the GPT last-lba dropped: it then fills the disk."""
    lines = [line for line in text.splitlines() if not line.startswith("last-lba:")]
    last = max((i for i, line in enumerate(lines) if _DUMP_LINE.match(line.strip()) and line.startswith("/")),
               default=None)
    if last is not None:
        lines[last] = re.sub(r",?\s*size=\s*\d+", "", lines[last])
    return "\n".join(lines) + "\n"


def _normalise(path: str) -> str:
    path = os.path.normpath(path or "/")
    return "/" if path in (".", "//") else path


def _spec_device(spec: str, blkid: Dict[str, Dict[str, str]]) -> Optional[str]:
    for key in ("UUID", "LABEL", "PARTUUID", "PARTLABEL"):
        if spec.startswith(key + "="):
            want = spec.split("=", 1)[1].strip('"')
            return next((dev for dev, tags in blkid.items() if tags.get(key) == want), None)
    if spec.startswith("/dev/"):
        return spec
    return None


def _blkid(data: Dict[str, Any], image: str) -> Dict[str, Dict[str, str]]:
    item = _item(data, image, "blkid")
    parsed = item.get("data") if item else None
    if not isinstance(parsed, dict):
        raise PlanError(f"{image}: metadata item blkid has no parsed data")
    return parsed


def _disk_size(data: Dict[str, Any], disk: str) -> Optional[int]:
    lsblk = (data["items"].get("lsblk") or {}).get("data") or {}
    for dev in lsblk.get("blockdevices") or []:
        if (dev.get("kname") or dev.get("name")) == disk:
            try:
                return int(dev.get("size"))
            except (TypeError, ValueError):
                return None
    return None


def choose_disk(data: Dict[str, Any], image: str, fstab: List[Dict[str, str]],
                blkid: Dict[str, Dict[str, str]], disk: Optional[str]) -> str:
    dumps = sorted(name.split("/", 1)[1] for name, item in data["items"].items()
                   if name.startswith("sfdisk/") and isinstance(item, dict) and item.get("status") == "ok")
    if disk:
        disk = disk[len("/dev/"):] if disk.startswith("/dev/") else disk
        if disk not in dumps:
            raise PlanError(f"{image}: no saved partition table of disk {disk} "
                            f"(saved: {', '.join(dumps) or 'none'})")
        return disk
    if not dumps:
        raise PlanError(f"{image}: no saved partition table (no sfdisk item with status ok)")
    root = next((row for row in fstab if row.get("file") == "/"), None)
    device = _spec_device(root["spec"], blkid) if root else None
    if device:
        for name in dumps:
            _header, parts = parse_dump(data["items"][f"sfdisk/{name}"]["output"])
            if any(p["node"] == device for p in parts):
                return name
    if len(dumps) == 1:
        return dumps[0]
    raise PlanError(f"{image}: several disks have saved partition tables ({', '.join(dumps)}) and none holds / "
                    "in the fstab; name the disk to rebuild")


# ------------------------------------------------------------------------------------------ planning
def build_plan(data: Dict[str, Any], vaults: Sequence[VaultSource], image: str, disk: Optional[str] = None,
               grow_last_partition: bool = False, boot_loader: str = "auto") -> DiskPlan:
    if boot_loader not in BOOT_LOADERS:
        raise PlanError(f"boot loader {boot_loader!r} is not one of {', '.join(BOOT_LOADERS)}")
    fstab_item = _item(data, image, "fstab")
    fstab = fstab_item.get("data") if isinstance(fstab_item.get("data"), list) else []
    blkid = _blkid(data, image)
    disk = choose_disk(data, image, fstab, blkid, disk)
    dump = data["items"][f"sfdisk/{disk}"]["output"]
    header, raw_parts = parse_dump(dump)
    label = header.get("label", "")
    if label not in ("gpt", "dos"):
        raise PlanError(f"{image}: saved partition table of {disk} has label {label!r} (expected gpt or dos)")
    try:
        sector = int(header.get("sector-size", "512"))
    except ValueError:
        raise PlanError(f"{image}: saved partition table of {disk} has an odd sector-size "
                        f"{header.get('sector-size')!r}") from None

    mount_of: Dict[str, Dict[str, str]] = {}
    for row in fstab:
        device = _spec_device(row.get("spec", ""), blkid)
        if device:
            mount_of[device] = row

    partitions = []
    for raw in raw_parts:
        try:
            number = partition_number(raw["node"])
            start, size = int(raw.get("start", "")), int(raw.get("size", ""))
        except ValueError:
            raise PlanError(f"{image}: saved partition table of {disk}: odd partition line for {raw['node']} "
                            "(expected a number, start= and size=)") from None
        tags = blkid.get(raw["node"], {})
        row = mount_of.get(raw["node"])
        fstype = tags.get("TYPE")
        mount_point = None
        if row and fstype != "swap" and row.get("file", "").startswith("/"):
            mount_point = _normalise(row["file"])
        if fstype and fstype not in MKFS_TYPES:
            raise PlanError(f"{image}: partition {raw['node']} has filesystem {fstype}, which the rebuild cannot "
                            f"make with its UUID (supported: {', '.join(MKFS_TYPES)})")
        partitions.append(Partition(number=number, node=raw["node"], start=start, size=size,
                                    type=raw.get("type", ""), fstype=fstype, uuid=tags.get("UUID"),
                                    label=tags.get("LABEL"), mount_point=mount_point,
                                    options=(row or {}).get("mntopts", "")))
    if not partitions:
        raise PlanError(f"{image}: saved partition table of {disk} has no partitions")
    disk_bytes = _disk_size(data, disk)
    if not disk_bytes:
        last = max(p.start + p.size for p in partitions)
        disk_bytes = (last + (33 if label == "gpt" else 0)) * sector
    if grow_last_partition:
        last = max(partitions, key=lambda p: p.start)
        disk_bytes = (last.start + 1 + (33 if label == "gpt" else 0)) * sector

    by_mount = {p.mount_point: p for p in partitions if p.mount_point}
    # every mount point the client had (fstab, and mounted then): a tree on another disk's or a network
    # filesystem is not this disk's, even below this disk's /
    everywhere = {_normalise(row["file"]) for row in fstab if str(row.get("file", "")).startswith("/")}
    mounts_item = data["items"].get("mounts") or {}
    for row in (mounts_item.get("data") or []) if isinstance(mounts_item, dict) else []:
        if isinstance(row, dict) and str(row.get("file", "")).startswith("/"):
            everywhere.add(_normalise(row["file"]))
    everywhere |= set(by_mount)
    placements = []
    for source in vaults:
        tree = _normalise(source.tree)
        holders = [mp for mp in everywhere if tree == mp or mp == "/" or tree.startswith(mp + "/")]
        mp = max(holders, key=len) if holders else None
        if mp not in by_mount:
            continue  # a vault of a filesystem on another disk (or a network one): not this disk's
        part = by_mount[mp]
        subdir = "" if tree == mp else os.path.relpath(tree, mp)
        placements.append(Placement(vault=source.vault, tree=tree, image_tree=source.image_tree,
                                    partition=part.number, mount_point=mp, subdir=subdir))
    if not placements:
        raise PlanError(f"{image}: no vault's tree lies on a filesystem of disk {disk} "
                        f"(mount points: {', '.join(sorted(by_mount)) or 'none in the fstab'})")
    covered = {pl.mount_point for pl in placements}
    notes = tuple(f"note: no vault holds {mp} (partition {part.number}): its filesystem is made empty"
                  for mp, part in sorted(by_mount.items()) if mp not in covered)

    left_out: Dict[str, int] = {}
    if "/" in by_mount:
        left_out.update(dict(LEFT_OUT))
    # the fstab's mount points (what the client mounts at boot); of the filesystems mounted when the
    # metadata was collected, only those a vault left out (the rest came and went: USB sticks, sessions)
    configured = {_normalise(row["file"]) for row in fstab if str(row.get("file", "")).startswith("/")}
    virtual = tuple(path for path, _mode in LEFT_OUT if path != "/tmp")
    for mp in configured:
        if mp != "/":
            left_out.setdefault(mp, 0o1777 if mp in STICKY_DIRS else 0o755)
    for source in vaults:
        tree = _normalise(source.tree)
        for pattern in source.excludes:
            path = _anchored(pattern, tree)
            if path and path in everywhere:
                left_out.setdefault(path, 0o1777 if path in STICKY_DIRS else 0o755)
    for path in list(left_out):
        if any(path.startswith(top + "/") for top in virtual):
            del left_out[path]   # below /proc, /sys, /dev, /run: made by the running system itself
    # only what lies on this disk's filesystems; its own mount points are made when they are mounted
    left = tuple(sorted((p, m) for p, m in left_out.items() if p not in by_mount and _on_disk(p, by_mount)))

    boot = data.get("boot") if isinstance(data.get("boot"), dict) else {}
    firmware = boot.get("firmware") or "bios"
    chosen = boot_loader
    if boot_loader == "auto":
        if firmware == "efi":
            chosen = "efi"
        elif boot.get("grub_install_devices"):
            chosen = "bios"
        else:
            chosen = "none"
    if chosen == "efi" and not any(p.mount_point in ("/boot/efi", "/efi") and p.fstype == "vfat" for p in partitions):
        raise PlanError(f"{image}: EFI boot needs a vfat partition mounted on /boot/efi in the fstab, and disk {disk} "
                        "has none")
    if chosen == "bios" and label == "gpt" and not any(
            p.type.upper() == "21686148-6449-6E6F-744E-656564454649" for p in partitions):
        raise PlanError(f"{image}: BIOS boot from a gpt disk needs a BIOS boot partition, and disk {disk} has none")
    fstab_text = fstab_item.get("output", "")
    return DiskPlan(image=image, disk=disk, dump=dump, target_dump=grow_dump(dump) if grow_last_partition else dump,
                    label=label, sector_size=sector, disk_bytes=disk_bytes, partitions=tuple(partitions),
                    placements=tuple(placements), left_out=left, boot_loader=chosen, firmware=firmware,
                    grow_last_partition=grow_last_partition, fstab=fstab_text, notes=notes)


def _on_disk(path: str, by_mount: Dict[str, Partition]) -> bool:
    return any(path == mp or mp == "/" or path.startswith(mp + "/") for mp in by_mount)


def _anchored(pattern: str, tree: str) -> Optional[str]:
    """The client path an exclude pattern names, when it is anchored and has no wildcard."""
    pattern = pattern.strip()
    if not pattern.startswith("/") or any(c in pattern for c in "*?[\\"):
        return None
    return _normalise(os.path.join(tree, pattern.lstrip("/").rstrip("/")))
