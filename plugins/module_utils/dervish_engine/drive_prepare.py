"""The steps that make a blank disk a backup drive (``prepare_drive``): read the server's drive
settings, measure the rescue image, and run the plan of :mod:`drive_layout` step by step (partition,
``dd`` of the rescue image, GRUB, mkfs, DISKLABEL and banks), logging ``step N/M: ...``. The target
must have passed :func:`disk_guard.check_target` first; the module ``dervish.backup.prepare_drive``
does both.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

from .drive_layout import DriveLayoutError, partition_name
from .errors import DervishError

DECOMPRESSORS = {".gz": ["gzip", "-dc"], ".xz": ["xz", "-dc"], ".zst": ["zstd", "-dcq"]}


class StepFailed(DervishError):
    """A step of the preparation failed; the message says which tool said what."""


def run(args, input=None):
    proc = subprocess.run(args, capture_output=True, text=True, check=False, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise StepFailed(f"{' '.join(args)} exited {proc.returncode}: {said[-1] if said else 'no message'}")
    return proc.stdout


def read_drive(wrapper):
    """DRIVE=LABEL=.../UUID=... and MOUNT_POINT= as the nightly run sees them."""
    if not os.access(wrapper, os.X_OK):
        raise DriveLayoutError(f"{wrapper} not found: this host is no provisioned dervish backup server "
                               "(apply the role dervish.backup.backup_server first)")
    values = dict(line.split("=", 1) for line in run([wrapper, "--holds"]).splitlines() if "=" in line)
    spec, mount_point = values.get("DRIVE", ""), values.get("MOUNT_POINT", "")
    label = spec[len("LABEL="):] if spec.startswith("LABEL=") else ""
    uuid = spec[len("UUID="):] if spec.startswith("UUID=") else ""
    return label, uuid, mount_point


def decompressor(image):
    for suffix, command in DECOMPRESSORS.items():
        if image.endswith(suffix):
            return command
    return ["cat"]


def image_bytes(image):
    """The rescue image's size once decompressed (read through once: a header's size may be missing or wrong)."""
    if not os.path.isfile(image):
        raise DriveLayoutError(f"dervish_prepare_drive_rescue_image: {image} does not exist on this server: "
                               "put the compressed rescue image there (see README: prepare a backup drive)")
    command = decompressor(image)
    if command == ["cat"]:
        return os.path.getsize(image)
    total = 0
    with subprocess.Popen([*command, image], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
            total += len(chunk)
        err = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise DriveLayoutError(f"dervish_prepare_drive_rescue_image: {image} cannot be decompressed "
                               f"({command[0]}: {err or 'exit ' + str(proc.returncode)})")
    return total


def ensure_partition_nodes(device, count):
    """Partition nodes of ``device`` 1..count: re-read the table with partx and make any node no udev made."""
    name = os.path.basename(os.path.realpath(device))
    subprocess.run(["partx", "-u", device], capture_output=True, check=False)
    subprocess.run(["partx", "-a", device], capture_output=True, check=False)
    if shutil.which("udevadm"):
        subprocess.run(["udevadm", "settle", "--timeout=10"], capture_output=True, check=False)
    nodes = []
    for number in range(1, count + 1):
        node = partition_name(device, number)
        part = partition_name(name, number)
        devfile = f"/sys/class/block/{part}/dev"
        deadline = time.monotonic() + 5
        while not os.path.exists(devfile) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not os.path.exists(devfile):
            raise StepFailed(f"partition {number} of {device} did not appear (no {devfile}) after partx -a")
        with open(devfile, encoding="ascii") as handle:
            major, minor = (int(x) for x in handle.read().split(":"))
        if not os.path.exists(node):
            os.mknod(node, 0o660 | stat.S_IFBLK, os.makedev(major, minor))
        elif os.stat(node).st_rdev != os.makedev(major, minor):
            raise StepFailed(f"{node} exists but is not partition {number} of {device} ({major}:{minor})")
        nodes.append(node)
    return nodes


def write_image(image, partition):
    with subprocess.Popen([*decompressor(image), image], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as source:
        dd = subprocess.run(["dd", f"of={partition}", "bs=4M", "conv=fsync", "status=none"], stdin=source.stdout,
                            capture_output=True, text=True, check=False)
        source.stdout.close()
        err = source.stderr.read().decode(errors="replace").strip()
    if source.returncode != 0:
        raise StepFailed(f"{decompressor(image)[0]} {image} exited {source.returncode}: {err}")
    if dd.returncode != 0:
        raise StepFailed(f"dd of={partition} exited {dd.returncode}: {dd.stderr.strip()}")


def probe(partition):
    out = run(["blkid", "-c", "/dev/null", "-o", "export", partition])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def kernel_version_key(name):
    """Orders kernel file names by version: vmlinuz-6.1.0-10-amd64 after vmlinuz-6.1.0-9-amd64."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def grub_cfg(root, uuid):
    """A grub.cfg for the newest kernel in the rescue system's /boot (its root found by UUID)."""
    boot = os.path.join(root, "boot")
    kernels = sorted((n for n in os.listdir(boot) if n.startswith("vmlinuz")), key=kernel_version_key) \
        if os.path.isdir(boot) else []
    if not kernels:
        raise StepFailed("the rescue image has no kernel in /boot (vmlinuz*): the drive could not boot; "
                         "use an image of a bootable system")
    kernel = kernels[-1]
    initrd = "initrd.img" + kernel[len("vmlinuz"):]
    lines = ["# written by dervish.backup.prepare_drive: the rescue system on this drive",
             "serial --unit=0 --speed=115200", "terminal_input console serial", "terminal_output console serial",
             "set timeout=3", "menuentry 'dervish rescue' {",
             f"  search --no-floppy --fs-uuid --set=root {uuid}",
             f"  linux /boot/{kernel} root=UUID={uuid} ro console=tty0 console=ttyS0,115200"]
    if os.path.exists(os.path.join(boot, initrd)):
        lines.append(f"  initrd /boot/{initrd}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class Mounted:
    def __init__(self, partition, log):
        self.partition, self.log, self.dir = partition, log, None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="dervish-drive-")
        run(["mount", self.partition, self.dir])
        return self.dir

    def __exit__(self, *exc):
        subprocess.run(["sync"], check=False)
        proc = subprocess.run(["umount", self.dir], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            self.log.append(f"WARNING: could not unmount {self.dir}: {proc.stderr.strip()}")
        else:
            os.rmdir(self.dir)
        return False


def execute(layout, drivelog, log):
    device = layout.device
    total = len(layout.steps)

    def step(n):
        log.append(f"step {n}/{total}: {layout.steps[n - 1]}")

    step(1)
    run(["wipefs", "-a", "-q", device])
    run(["sfdisk", "-q", "--wipe", "always", "--wipe-partitions", "always", device], input=layout.sfdisk_script())
    _bios, rescue, backup = ensure_partition_nodes(device, 3)

    step(2)
    write_image(layout.rescue_image, rescue)
    tags = probe(rescue)
    rescue_uuid = tags.get("UUID", "")
    if not rescue_uuid:
        raise StepFailed(f"the rescue image written to {rescue} has no filesystem blkid knows: "
                         "use a filesystem image (e.g. ext4), not a whole-disk image")

    step(3)
    with Mounted(rescue, log) as root:
        cfg = os.path.join(root, "boot", "grub", "grub.cfg")
        if not os.path.isfile(cfg):
            text = grub_cfg(root, rescue_uuid)
            os.makedirs(os.path.dirname(cfg), exist_ok=True)
            with open(cfg, "w", encoding="utf-8") as handle:
                handle.write(text)
            log.append("the rescue image has no /boot/grub/grub.cfg: one was written for its kernel "
                       f"(UUID {rescue_uuid})")
        run(["grub-install", "--target=i386-pc", f"--boot-directory={root}/boot", device])

    step(4)
    if layout.filesystem == "ext4":
        run(["mkfs.ext4", "-q", "-F", *(["-L", layout.fs_label] if layout.fs_label else []),
             *(["-U", layout.fs_uuid] if layout.fs_uuid else []), backup])
    else:
        run(["mkfs.btrfs", "-q", "-f", *(["-L", layout.fs_label] if layout.fs_label else []),
             *(["-U", layout.fs_uuid] if layout.fs_uuid else []), backup])

    step(5)
    with Mounted(backup, log) as root:
        os.chmod(root, 0o700)  # the drive is root-only
        with open(os.path.join(root, "DISKLABEL"), "w", encoding="utf-8") as handle:
            handle.write(layout.disklabel + "\n")
        os.chmod(os.path.join(root, "DISKLABEL"), 0o600)
        for bank in layout.banks:
            path = root
            for part in bank.split("/"):
                path = os.path.join(path, part)
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
    spec = f"LABEL={layout.fs_label}" if layout.fs_label else f"UUID={layout.fs_uuid}"
    os.makedirs(os.path.dirname(drivelog) or "/", exist_ok=True)
    with open(drivelog, "a", encoding="utf-8") as handle:
        handle.write(f"{layout.disklabel} {time.strftime('%a %b %e %T %Z %Y')} prepared: {device} "
                     f"({spec}, {layout.filesystem}, rescue from {layout.rescue_image})\n")
    log.append(f"done: {device} is the backup drive {layout.disklabel} ({spec})")
    return dict(device=device, disklabel=layout.disklabel, filesystem=layout.filesystem, spec=spec,
                rescue_partition=rescue, backup_partition=backup, rescue_uuid=rescue_uuid, banks=layout.banks)
