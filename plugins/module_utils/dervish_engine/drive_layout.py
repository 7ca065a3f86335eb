"""The layout of a new backup drive (``playbooks/prepare_drive.yml``), as the classic setup makes it.

Pure: from the drive's size and the operator's choices it builds the ``sfdisk`` script and the list
of steps, so that check mode can show exactly what a run would do. The drive gets a GPT table with

1. a 1 MiB BIOS boot partition, where ``grub-install --target=i386-pc`` puts GRUB's core (GPT has no
   gap after the MBR to hold it), so the drive itself boots on a BIOS machine;
2. the rescue partition (``rescue_bytes``), into which a compressed rescue image is written with
   ``dd``: a small bootable system that repairs or rebuilds the main disk from this drive;
3. the backup partition (the rest of the drive), made with the label (or UUID) by which the backup
   server's nightly run finds and mounts its drive, holding ``DISKLABEL`` and the bank directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import List, Optional, Sequence

from .errors import DervishError

MIB = 1024 * 1024
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# GPT's own structures and the 1 MiB alignment take the first MiB; the backup table the last 33 sectors.
OVERHEAD_BYTES = 2 * MIB
MIN_BACKUP_BYTES = 64 * MIB  # mkfs.btrfs's minimum is about this; a drive smaller is no backup drive
FILESYSTEMS = ("ext4", "btrfs")
_SIZE = re.compile(r"^\s*(\d+)\s*(MiB|M|GiB|G|TiB|T)?\s*$")
_UNITS = {None: MIB, "M": MIB, "MiB": MIB, "G": 1024 * MIB, "GiB": 1024 * MIB, "T": MIB * MIB, "TiB": MIB * MIB}
_DISKLABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DriveLayoutError(DervishError):
    """A choice for a new drive that cannot work; the message names the variable."""


def parse_size(text, variable: str) -> int:
    """``1024``, ``"1024M"``, ``"1GiB"`` (whole MiB, GiB or TiB; a bare number is MiB) -> bytes."""
    match = _SIZE.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise DriveLayoutError(f"{variable}: {text!r} is not a size: expected a positive whole number of MiB, "
                               "or one with a unit M/MiB, G/GiB, T/TiB (e.g. 1GiB)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def check_disklabel(label: str, variable: str) -> str:
    """The drive's name in DISKLABEL and the drive log: one word, as Dirvish-era drive logs split lines
    on blanks."""
    if not isinstance(label, str) or not _DISKLABEL.match(label):
        raise DriveLayoutError(f"{variable}: {label!r} is not a drive name: expected 1-64 characters "
                               "A-Z a-z 0-9 . _ -, the first a letter or digit (e.g. backup-2)")
    return label


def bank_dirs(banks: Sequence[str], mount_point: str) -> List[str]:
    """Each bank as a path relative to the drive's root; a bank not below the mount point is an error
    (the nightly run would refuse it too)."""
    root = PurePosixPath(mount_point)
    out = []
    for bank in banks:
        path = PurePosixPath(bank)
        if ".." in path.parts or path == root or root not in path.parents:
            raise DriveLayoutError(f"bank {bank} is not below the drive's mount point {mount_point}: "
                                   "the drive would not hold it (backup_server_banks)")
        out.append(str(path.relative_to(root)))
    return out


@dataclass
class DriveLayout:
    device: str
    disk_bytes: int
    rescue_bytes: int
    filesystem: str
    fs_label: str
    fs_uuid: str
    disklabel: str
    banks: List[str]
    rescue_image: Optional[str]
    steps: List[str] = field(default_factory=list)

    @property
    def needed_bytes(self) -> int:
        return OVERHEAD_BYTES + MIB + self.rescue_bytes + MIN_BACKUP_BYTES

    @property
    def backup_bytes(self) -> int:
        return self.disk_bytes - OVERHEAD_BYTES - MIB - self.rescue_bytes

    def sfdisk_script(self) -> str:
        return ("label: gpt\n"
                f"size=1MiB, type={BIOS_BOOT_TYPE}, name=bios\n"
                f"size={self.rescue_bytes // MIB}MiB, type={LINUX_TYPE}, name=rescue\n"
                f"type={LINUX_TYPE}, name=backup\n")


def plan_drive(device: str, disk_bytes: int, *, rescue_size, filesystem: str, fs_label: str, fs_uuid: str,
               disklabel: str, banks: Sequence[str], mount_point: str, rescue_image: Optional[str],
               rescue_image_bytes: Optional[int] = None) -> DriveLayout:
    """The layout and the numbered steps; every choice is checked here, before anything is written."""
    if filesystem not in FILESYSTEMS:
        raise DriveLayoutError(f"dervish_prepare_drive_filesystem: {filesystem!r} is not supported: "
                               f"expected one of {', '.join(FILESYSTEMS)}")
    if not fs_label and not fs_uuid:
        raise DriveLayoutError("backup_server_drive has neither label nor uuid on this server (banks on a fixed "
                               "path): the nightly run would not look for a drive, so there is none to prepare")
    layout = DriveLayout(device=device, disk_bytes=disk_bytes,
                         rescue_bytes=parse_size(rescue_size, "dervish_prepare_drive_rescue_size"),
                         filesystem=filesystem, fs_label=fs_label, fs_uuid=fs_uuid,
                         disklabel=check_disklabel(disklabel, "dervish_prepare_drive_label"),
                         banks=bank_dirs(banks, mount_point), rescue_image=rescue_image or None)
    if rescue_image_bytes is not None and rescue_image_bytes > layout.rescue_bytes:
        raise DriveLayoutError(
            f"dervish_prepare_drive_rescue_image: {rescue_image} holds {rescue_image_bytes // MIB} MiB, more than "
            f"the rescue partition's {layout.rescue_bytes // MIB} MiB: raise dervish_prepare_drive_rescue_size")
    spec = f"LABEL={fs_label}" if fs_label else f"UUID={fs_uuid}"
    part = partition_name(device, 1)
    layout.steps = [
        f"wipe the signatures on {device} and write a GPT table: {part} BIOS boot 1 MiB, "
        f"{partition_name(device, 2)} rescue {layout.rescue_bytes // MIB} MiB, "
        f"{partition_name(device, 3)} backup {max(0, layout.backup_bytes) // MIB} MiB",
        (f"write the rescue image {rescue_image} onto {partition_name(device, 2)} with dd"
         if rescue_image else f"build a minimal rescue system on {partition_name(device, 2)}"),
        f"install GRUB (i386-pc) on {device} with /boot/grub on {partition_name(device, 2)}",
        f"make the backup filesystem on {partition_name(device, 3)}: {filesystem}, {spec}",
        f"write DISKLABEL {disklabel} and the bank directories ({', '.join(layout.banks)}) on it, root-only",
    ]
    return layout


def partition_name(device: str, number: int) -> str:
    """``/dev/sdb`` 1 -> ``/dev/sdb1``; a name ending in a digit (``/dev/loop3``, ``/dev/nvme0n1``) gets a ``p``."""
    return f"{device}{'p' if device[-1:].isdigit() else ''}{number}"
