"""The refusals before a whole disk is overwritten (bare-metal restore, drive preparation).

``check_target(device, confirm, needed_bytes, server_facts)`` returns the target's ``TargetDisk`` or
raises ``TargetRefused`` with one line that names the device (or the confirmation variable) and says
what to do. It reads only (sysfs, ``/proc/self/mountinfo``, ``/proc/swaps``, ``blkid``); nothing is
written before it has passed, so every refusal changes nothing.

A target is refused when it:

* is not a block device, or is a partition rather than a whole disk;
* is mounted, has a mounted partition (matched by ``major:minor`` in ``/proc/self/mountinfo``, so a
  mount through another device name is seen too), is swap in use, or has holders (device-mapper,
  md, LVM on it or on a partition);
* is the disk of the running system (``/``, ``/boot``, ``/boot/efi``) or of any mounted filesystem,
  through device-mapper/md layers (``slaves``);
* is the backup drive: the disk of a bank's filesystem, or a disk with a partition whose label or
  UUID is the configured drive's;
* is smaller than ``needed_bytes``;
* and unless ``confirm`` is exactly the device path given (no prefix, no other name of the same disk).

``ServerFacts`` are read once from the system (``read_server_facts``); the sysfs/proc roots are
parameters so that the same code runs against any tree. Stdlib only, Python 3.9+.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import DervishError

SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi")
SECTOR = 512


class TargetRefused(DervishError):
    """The target disk may not be written; the message says why and what to do."""


@dataclass(frozen=True)
class Mount:
    devno: str          # "major:minor" as in mountinfo
    mount_point: str
    fstype: str
    source: str


@dataclass
class ServerFacts:
    """What the server is using, read before anything is written."""

    mounts: List[Mount] = field(default_factory=list)
    swaps: List[str] = field(default_factory=list)            # device paths from /proc/swaps
    bank_paths: List[str] = field(default_factory=list)       # the banks (on the backup drive)
    drive_labels: List[str] = field(default_factory=list)     # the configured drive's label(s)
    drive_uuids: List[str] = field(default_factory=list)
    sys_root: str = "/sys"
    # device path -> {"LABEL": ..., "UUID": ...}; filled lazily by probe() with blkid
    probes: Dict[str, Dict[str, str]] = field(default_factory=dict)

    def probe(self, device: str) -> Dict[str, str]:
        if device not in self.probes:
            self.probes[device] = blkid_probe(device)
        return self.probes[device]


@dataclass(frozen=True)
class TargetDisk:
    path: str
    name: str                   # kernel name, e.g. loop3, sdb
    devno: str
    size_bytes: int
    partitions: Tuple[str, ...]  # kernel names of its partitions


# ------------------------------------------------------------------------------------------ parsing
def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and len(text[i + 1:i + 4]) == 3 and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> List[Mount]:
    mounts = []
    for line in text.splitlines():
        words = line.split()
        if "-" not in words or len(words) < 7:
            continue
        sep = words.index("-")
        if len(words) < sep + 3:
            continue
        mounts.append(Mount(devno=words[2], mount_point=_unescape(words[4]), fstype=words[sep + 1],
                            source=_unescape(words[sep + 2])))
    return mounts


def parse_swaps(text: str) -> List[str]:
    return [_unescape(line.split()[0]) for line in text.splitlines()[1:] if line.split()]


def blkid_probe(device: str) -> Dict[str, str]:
    """LABEL/UUID/TYPE of a device as blkid probes it now (empty when it has none)."""
    try:
        proc = subprocess.run(["blkid", "-c", "/dev/null", "-o", "export", device], capture_output=True,
                              text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def read_server_facts(bank_paths: Sequence[str] = (), drive_labels: Sequence[str] = (),
                      drive_uuids: Sequence[str] = (), proc_root: str = "/proc", sys_root: str = "/sys") -> ServerFacts:
    with open(os.path.join(proc_root, "self/mountinfo"), encoding="utf-8", errors="surrogateescape") as handle:
        mounts = parse_mountinfo(handle.read())
    try:
        with open(os.path.join(proc_root, "swaps"), encoding="utf-8", errors="surrogateescape") as handle:
            swaps = parse_swaps(handle.read())
    except FileNotFoundError:
        swaps = []
    return ServerFacts(mounts=mounts, swaps=swaps, bank_paths=[str(p) for p in bank_paths if p],
                       drive_labels=[str(x) for x in drive_labels if x], drive_uuids=[str(x) for x in drive_uuids if x],
                       sys_root=sys_root)


# -------------------------------------------------------------------------------------------- sysfs
def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def devno_to_disks(devno: str, sys_root: str = "/sys") -> List[str]:
    """The whole disks (kernel names) under a block device number, through partitions, dm and md."""
    link = os.path.join(sys_root, "dev/block", devno)
    if not os.path.exists(link):
        return []
    real = os.path.realpath(link)
    return _disks_of(real, sys_root, depth=0)


def _disks_of(real: str, sys_root: str, depth: int) -> List[str]:
    if depth > 16:
        return []
    if os.path.exists(os.path.join(real, "partition")):
        return [os.path.basename(os.path.dirname(real))]
    slaves_dir = os.path.join(real, "slaves")
    slaves = sorted(os.listdir(slaves_dir)) if os.path.isdir(slaves_dir) else []
    if not slaves:
        return [os.path.basename(real)]
    disks: List[str] = []
    for slave in slaves:
        for disk in _disks_of(os.path.realpath(os.path.join(slaves_dir, slave)), sys_root, depth + 1):
            if disk not in disks:
                disks.append(disk)
    return disks


def _path_mount(path: str, mounts: Sequence[Mount]) -> Optional[Mount]:
    """The mount that holds ``path`` (longest mount-point prefix; the last one mounted there wins)."""
    best: Optional[Mount] = None
    path = os.path.normpath(path)
    for mount in mounts:
        mp = mount.mount_point
        inside = path == mp or path.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best.mount_point)):
            best = mount
    return best


# ------------------------------------------------------------------------------------------- checks
def describe_target(device: str, sys_root: str = "/sys") -> TargetDisk:
    """The whole disk at ``device``; TargetRefused when it is none."""
    try:
        st = os.stat(device)
    except OSError as exc:
        raise TargetRefused(f"target {device}: {exc.strerror}; name the whole disk, e.g. /dev/sdb") from None
    if not stat.S_ISBLK(st.st_mode):
        raise TargetRefused(f"target {device} is not a block device; name the whole disk, e.g. /dev/sdb")
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    real = os.path.realpath(os.path.join(sys_root, "dev/block", devno))
    if not os.path.isdir(real):
        raise TargetRefused(f"target {device} ({devno}) is not known to the kernel (no {sys_root}/dev/block/{devno})")
    name = os.path.basename(real)
    if os.path.exists(os.path.join(real, "partition")):
        disk = os.path.basename(os.path.dirname(real))
        raise TargetRefused(f"target {device} is a partition of {disk}, not a whole disk; name the disk (/dev/{disk})")
    size = int(_read(os.path.join(real, "size")) or 0) * SECTOR
    parts = tuple(sorted((entry for entry in os.listdir(real)
                          if os.path.exists(os.path.join(real, entry, "partition"))), key=_natural))
    return TargetDisk(path=device, name=name, devno=devno, size_bytes=size, partitions=parts)


def _natural(name: str) -> Tuple[str, int]:
    digits = len(name) - len(name.rstrip("0123456789"))
    return (name[:len(name) - digits], int(name[len(name) - digits:] or 0))


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def check_target(device: str, confirm: Optional[str], needed_bytes: int, server_facts: ServerFacts,
                 confirm_variable: str = "confirm") -> TargetDisk:
    """The target disk when it may be overwritten; TargetRefused (one line) otherwise."""
    if not isinstance(device, str) or not device.startswith("/dev/"):
        raise TargetRefused(f"target {device!r} is not a device path; name the whole disk, e.g. /dev/sdb")
    sys_root = server_facts.sys_root
    target = describe_target(device, sys_root)
    own = {target.devno: target.name}
    for part in target.partitions:
        devno = _read(os.path.join(sys_root, "class/block", target.name, part, "dev")) or \
            _read(os.path.join(sys_root, "block", target.name, part, "dev"))
        if devno:
            own[devno] = part

    # the running system and the backup drive first: the worst mistakes get the clearest message
    for mp in SYSTEM_MOUNTS:
        mount = next((m for m in reversed(server_facts.mounts) if m.mount_point == mp), None)
        if mount and target.name in devno_to_disks(mount.devno, sys_root):
            raise TargetRefused(f"target {device} holds {mp} of the running system (the server's own disk); "
                                "name the blank disk you attached")
    for bank in server_facts.bank_paths:
        mount = _path_mount(bank, server_facts.mounts)
        if mount and target.name in devno_to_disks(mount.devno, sys_root):
            raise TargetRefused(f"target {device} is the backup drive (it holds the bank {bank}); "
                                "name the blank disk you attached")
    for part in target.partitions:
        tags = server_facts.probe(f"/dev/{part}") if os.path.exists(f"/dev/{part}") else {}
        if tags.get("LABEL") and tags["LABEL"] in server_facts.drive_labels:
            raise TargetRefused(f"target {device} is the backup drive (partition /dev/{part} has its label "
                                f"{tags['LABEL']}); name the blank disk you attached")
        if tags.get("UUID") and tags["UUID"] in server_facts.drive_uuids:
            raise TargetRefused(f"target {device} is the backup drive (partition /dev/{part} has its UUID "
                                f"{tags['UUID']}); name the blank disk you attached")

    for mount in server_facts.mounts:
        if mount.devno in own:
            what = device if own[mount.devno] == target.name else f"its partition /dev/{own[mount.devno]}"
            raise TargetRefused(f"target {device}: {what} is mounted on {mount.mount_point}; "
                                f"unmount it (umount {mount.mount_point}) or name another disk")
        if target.name in devno_to_disks(mount.devno, sys_root):
            raise TargetRefused(f"target {device} holds the filesystem mounted on {mount.mount_point} "
                                f"({mount.source}); unmount it or name another disk")
    for swap in server_facts.swaps:
        try:
            st = os.stat(swap)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" in own:
            raise TargetRefused(f"target {device}: {swap} is swap in use; swapoff {swap} or name another disk")
    for name in (target.name, *target.partitions):
        base = os.path.join(sys_root, "class/block", name, "holders")
        holders = sorted(os.listdir(base)) if os.path.isdir(base) else []
        if holders:
            raise TargetRefused(f"target {device}: /dev/{name} is in use by {', '.join(holders)} "
                                "(device-mapper, md or LVM); stop those or name another disk")

    if target.size_bytes < needed_bytes:
        raise TargetRefused(f"target {device} is too small: {target.size_bytes} bytes ({_human(target.size_bytes)}), "
                            f"needed {needed_bytes} bytes ({_human(needed_bytes)}); attach a disk at least that large")
    if confirm != device:
        shown = "not set" if confirm in (None, "") else f"{confirm!r}"
        raise TargetRefused(f"{confirm_variable} is {shown}: it must be exactly {device!r} to overwrite that disk "
                            "(everything on it is lost)")
    return target
