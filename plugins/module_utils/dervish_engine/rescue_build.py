"""Build the rescue image that ``prepare_drive`` writes onto every new backup drive, when the server has
none: a small Debian system (``debootstrap``) with the disk, filesystem, network and restore tools the
classic setup keeps on its drives, made into an ext4 filesystem image (label ``RESCUE``) and kept
compressed on the server, so the next drive gets the same image with ``dd``.

The rescue system boots to a root shell on the first console and the serial port (whoever can boot the
drive holds it anyway), brings up wired network by DHCP, and prints one line,
``DERVISH-RESCUE-READY root=<uuid>``, on the console once it is up. The server's own engine and
``dervish`` command are copied in, so images on the drive can be listed and restored from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import List, Sequence

from .drive_layout import MIB
from .drive_prepare import StepFailed

READY_MARKER = "DERVISH-RESCUE-READY"
LABEL = "RESCUE"
# What the classic setup keeps on its drives: "a working distro, including all the disk and ethernet
# tools" - to boot, partition, make and repair filesystems, copy trees back, reinstall GRUB, reach the net.
PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "kmod", "fdisk", "gdisk", "parted", "e2fsprogs",
    "btrfs-progs", "xfsprogs", "dosfstools", "rsync", "openssh-client", "grub-pc-bin", "grub-efi-amd64-bin",
    "grub2-common", "zstd", "xz-utils", "iproute2", "iputils-ping", "less", "nano", "procps", "pciutils",
    "python3",
)
# Kernel modules a rescue system has no use for (sound, video capture, wireless, InfiniBand, sensors,
# staging): about 120 MiB of a 390 MiB module tree. Disk, filesystem, USB, wired network and graphics stay.
UNNEEDED_MODULES = ("sound", "drivers/media", "drivers/net/wireless", "net/wireless", "net/bluetooth",
                    "drivers/bluetooth", "drivers/infiniband", "drivers/iio", "drivers/staging")
COMPRESSORS = {".gz": ["gzip", "-c"], ".xz": ["xz", "-c", "-T0"], ".zst": ["zstd", "-q", "-c", "-T0"]}
ENGINE_DIR = "/usr/local/lib/dervish"
DERVISH_COMMAND = "/usr/local/sbin/dervish"


@dataclass(frozen=True)
class RescueSource:
    """Where the rescue system comes from: a Debian suite from a mirror, plus any extra packages."""
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    extra_packages: Sequence[str] = ()

    def describe(self) -> str:
        extra = f" with {', '.join(self.extra_packages)}" if self.extra_packages else ""
        return f"debootstrap {self.suite} from {self.mirror}{extra}"


def compressor(image: str) -> List[str]:
    for suffix, command in COMPRESSORS.items():
        if image.endswith(suffix):
            return command
    return ["cat"]


def _run(args, log_file=None):
    with open(log_file or os.devnull, "a", encoding="utf-8") as out:
        proc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT if log_file else subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, check=False)
    if proc.returncode != 0:
        said = ""
        if log_file:
            with open(log_file, encoding="utf-8", errors="replace") as handle:
                said = " | ".join(handle.read().strip().splitlines()[-5:])
        else:
            said = (proc.stderr or "").strip()
        raise StepFailed(f"{' '.join(args[:3])} ... exited {proc.returncode}: {said or 'no message'}")


def mounts_below(path: str) -> List[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mounts."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[1].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: str) -> None:
    """Remove a build tree, but never through a mount (a chroot's /proc or /dev left mounted by a killed
    debootstrap would otherwise be descended into)."""
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = mounts_below(path)
    if left:
        raise StepFailed(f"{left[0]} is still mounted: {path} was left in place; unmount it and remove it")
    shutil.rmtree(path, ignore_errors=True)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _enable(root: str, unit: str, target: str = "multi-user.target") -> None:
    wants = os.path.join(root, "etc/systemd/system", f"{target}.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, os.path.basename(unit))
    if not os.path.lexists(link):
        os.symlink(unit, link)


def configure(root: str, fs_uuid: str) -> None:
    """Make the debootstrapped tree a rescue system that boots from the drive's rescue partition."""
    _write(f"{root}/etc/hostname", "dervish-rescue\n")
    _write(f"{root}/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 dervish-rescue\n")
    _write(f"{root}/etc/fstab", "# <file system> <mount point> <type> <options> <dump> <pass>\n"
                                f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    _write(f"{root}/etc/machine-id", "")  # every boot of a drive makes its own
    _write(f"{root}/etc/issue",
           "dervish rescue system (\\l)\n\n"
           "The backup partition of this drive is not mounted: mount it read-only, e.g.\n"
           "  mount -o ro LABEL=<your drive label> /mnt; dervish --help\n\n")
    # a root shell on the consoles, no password: booting the drive already needs the hardware in hand
    # (systemd starts the serial console's getty by itself when the kernel's console is ttyS0)
    for getty, port in (("getty@tty1", "--noclear"), ("serial-getty@ttyS0", "--keep-baud 115200,57600,38400,9600")):
        _write(f"{root}/etc/systemd/system/{getty}.service.d/autologin.conf",
               f"[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root {port} - $TERM\n")
    _write(f"{root}/etc/systemd/network/80-wired-dhcp.network",
           "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
    _enable(root, "/lib/systemd/system/systemd-networkd.service")
    # $$: systemd's own expansion would otherwise take the shell's $(...)
    _write(f"{root}/etc/systemd/system/dervish-rescue-ready.service",
           "[Unit]\nDescription=Say on the console that the dervish rescue system is up\n"
           "After=local-fs.target\n\n[Service]\nType=oneshot\n"
           f"ExecStart=/bin/sh -c 'echo \"{READY_MARKER} root=$$(findmnt -n -o UUID /)\" > /dev/console'\n\n"
           "[Install]\nWantedBy=multi-user.target\n")
    _enable(root, "/etc/systemd/system/dervish-rescue-ready.service")
    if os.path.isdir(ENGINE_DIR) and os.path.isfile(DERVISH_COMMAND):
        shutil.copytree(ENGINE_DIR, f"{root}{ENGINE_DIR}", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(DERVISH_COMMAND, f"{root}{DERVISH_COMMAND}")
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/apt/lists", "var/cache/apt"):
        target = os.path.join(root, junk)
        if os.path.isdir(target):
            for name in os.listdir(target):
                child = os.path.join(target, name)
                if os.path.isdir(child) and not os.path.islink(child):
                    shutil.rmtree(child)
                else:
                    os.unlink(child)


def trim_kernel_modules(root: str) -> None:
    """Drop UNNEEDED_MODULES from every kernel of the tree and rebuild its module index."""
    modules = os.path.join(root, "lib/modules")
    for version in sorted(os.listdir(modules)) if os.path.isdir(modules) else []:
        kernel = os.path.join(modules, version, "kernel")
        for rel in UNNEEDED_MODULES:
            shutil.rmtree(os.path.join(kernel, rel), ignore_errors=True)
        if os.path.isdir(kernel):
            _run(["chroot", root, "depmod", version])


def tree_bytes(root: str) -> int:
    du = subprocess.run(["du", "-sbx", root], capture_output=True, text=True, check=False)
    if du.returncode != 0:
        raise StepFailed(f"du -sbx {root} exited {du.returncode}: {du.stderr.strip()}")
    return int(du.stdout.split()[0])


def filesystem_bytes(used: int) -> int:
    """Room for the tree, ext4's own structures and a little work space: 1.3x plus 64 MiB, whole MiB."""
    return (used * 13 // 10 // MIB + 64) * MIB


def build_rescue_image(image: str, source: RescueSource, limit_bytes: int, log: List[str]) -> int:
    """Build the rescue image at ``image`` (compressed by its suffix); return its size uncompressed.

    Nothing is left at ``image`` unless the whole build succeeded (it is written beside it and renamed),
    and a system that would not fit ``limit_bytes`` (the rescue partition) is an error before anything
    is written to a disk."""
    for tool in ("debootstrap", "mkfs.ext4", compressor(image)[0]):
        if not shutil.which(tool):
            raise StepFailed(f"building the rescue image needs {tool}, which is not installed on this server")
    parent = os.path.dirname(os.path.abspath(image))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix=".rescue-build-", dir=parent)
    try:
        root, fs_image = os.path.join(work, "root"), os.path.join(work, "rescue.img")
        log.append(f"rescue image: {source.describe()} into {root}")
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join([*PACKAGES, *source.extra_packages]),
              source.suite, root, source.mirror], log_file=os.path.join(work, "debootstrap.log"))
        fs_uuid = str(uuidlib.uuid4())
        configure(root, fs_uuid)
        trim_kernel_modules(root)
        size = filesystem_bytes(tree_bytes(root))
        if size > limit_bytes:
            raise StepFailed(f"the rescue system needs a {size // MIB} MiB filesystem, more than the rescue "
                             f"partition's {limit_bytes // MIB} MiB: raise dervish_prepare_drive_rescue_size")
        with open(fs_image, "wb") as handle:
            handle.truncate(size)
        _run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-U", fs_uuid, "-d", root, fs_image])
        remove_tree(root)
        partial = image + ".partial"
        with open(partial, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            proc = subprocess.run([*compressor(image), fs_image], stdout=out, stderr=subprocess.PIPE, check=False)
            if proc.returncode != 0:
                raise StepFailed(f"{compressor(image)[0]} of the rescue image exited {proc.returncode}: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, image)
        log.append(f"rescue image: {image} built in {time.monotonic() - started:.0f} s "
                   f"({size // MIB} MiB filesystem, UUID {fs_uuid}); it is kept for the next drive")
        return size
    finally:
        if os.path.exists(image + ".partial"):
            os.unlink(image + ".partial")
        remove_tree(work)
