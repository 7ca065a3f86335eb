#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: prepare_drive
short_description: Make a blank disk a new backup drive of a dervish backup server
version_added: 0.1.0
author:
  - dervish developers (!UNKNOWN)
description:
  - Runs on a backup server that the role P(dervish.backup.backup_server#role) provisioned and turns a blank
    disk attached to it into a backup drive, as the classic setup prepares one - a GPT table with a 1 MiB
    BIOS boot partition, a rescue partition written with C(dd) from a compressed rescue image kept on the
    server, GRUB installed on the disk with its C(/boot/grub) on the rescue partition (so the drive boots by
    itself), and the backup partition made with the label (or UUID) by which the server's nightly run finds and
    mounts its drive, holding C(DISKLABEL) and the (root-only) bank directories.
  - The drive's label/UUID and mount point are read from the server's C(dervish-backup --holds), the banks from
    the engine's master configuration - what the nightly run uses, so the drive is one it mounts.
  - Before anything is written, the target is checked by the engine's C(disk_guard) (the same refusals as the
    bare-metal restore) - it must be a whole disk, not mounted, without a mounted partition, swap or holders, not
    the disk of the running system, not the backup drive (a bank's disk, a partition with the drive's label or
    UUID), large enough, and named exactly in O(confirm). Each refusal is one line and nothing is changed.
  - Each step is logged as C(step N/M - ...) in RV(log); a failed step stops the run with a message that names it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs every check (also the guard), returns the plan in RV(steps) and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  device:
    description: The whole disk to make a backup drive, e.g. C(/dev/sdb). Everything on it is lost.
    type: path
    required: true
  confirm:
    description:
      - Must be exactly O(device) for the disk to be written. In check mode a missing confirmation is a warning.
    type: str
    default: ""
  disklabel:
    description: The drive's name, written to C(DISKLABEL) on it and logged by every run that uses the drive.
    type: str
    required: true
  filesystem:
    description: Filesystem of the backup partition.
    type: str
    choices: [ext4, btrfs]
    default: ext4
  rescue_size:
    description: Size of the rescue partition, in MiB or with a unit (V(1GiB)); the rescue image must fit.
    type: str
    default: 1GiB
  rescue_image:
    description:
      - The rescue partition's image on the server - a filesystem image holding a bootable system with its kernel
        in C(/boot) (and its own C(/boot/grub/grub.cfg), else one is written for the newest kernel found), raw or
        compressed (C(.gz), C(.xz), C(.zst)). It is written as it is, so the rescue filesystem keeps its UUID.
    type: path
    required: true
  drivelog:
    description: The drive log, to which one line naming the new drive is appended.
    type: path
    default: /var/log/backup_drivelog
  wrapper:
    description: The server's backup wrapper, installed by P(dervish.backup.backup_server#role).
    type: path
    default: /usr/local/sbin/dervish-backup
  config:
    description: The engine's master configuration (its C(bank:) lines name the banks).
    type: path
    default: /etc/dervish/master.conf
notes:
  - Run it as root (C(become)).
  - Partition device nodes that no udev creates (a server without udev, a container) are made from sysfs.
seealso:
  - module: dervish.backup.backup_drive
"""

EXAMPLES = r"""
- name: Make /dev/sdc the backup drive backup-3
  dervish.backup.prepare_drive:
    device: /dev/sdc
    confirm: /dev/sdc
    disklabel: backup-3
    rescue_image: /var/lib/dervish/rescue.img.zst
  become: true
"""

RETURN = r"""
steps:
  description: The plan, one line per step (also in check mode).
  returned: always
  type: list
  elements: str
log:
  description: What was done, C(step N/M - ...) lines and what the tools said when a step failed.
  returned: always
  type: list
  elements: str
drive:
  description: The new drive - C(device), C(disklabel), C(filesystem), C(spec) (C(LABEL=...) or C(UUID=...)),
    C(rescue_partition), C(backup_partition), C(rescue_uuid), C(banks).
  returned: success
  type: dict
"""

import os
import shutil
import stat
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.disk_guard import (
    check_target,
    describe_target,
    read_server_facts,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.drive_layout import (
    DriveLayoutError,
    partition_name,
    plan_drive,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError

DECOMPRESSORS = {".gz": ["gzip", "-dc"], ".xz": ["xz", "-dc"], ".zst": ["zstd", "-dcq"]}


class StepFailed(Exception):
    pass


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
        for _ in range(50):
            if os.path.exists(devfile):
                break
            time.sleep(0.1)
        else:
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


def grub_cfg(root, uuid):
    """A grub.cfg for the newest kernel in the rescue system's /boot (its root found by UUID)."""
    boot = os.path.join(root, "boot")
    kernels = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz")) if os.path.isdir(boot) else []
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="path", required=True),
            confirm=dict(type="str", default=""),
            disklabel=dict(type="str", required=True),
            filesystem=dict(type="str", choices=["ext4", "btrfs"], default="ext4"),
            rescue_size=dict(type="str", default="1GiB"),
            rescue_image=dict(type="path", required=True),
            drivelog=dict(type="path", default="/var/log/backup_drivelog"),
            wrapper=dict(type="path", default="/usr/local/sbin/dervish-backup"),
            config=dict(type="path", default="/etc/dervish/master.conf"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = dict(changed=False, steps=[], log=[])
    try:
        label, uuid, mount_point = read_drive(p["wrapper"])
        banks = [str(b) for b in load_master(p["config"]).banks]
        target = describe_target(p["device"])
        layout = plan_drive(p["device"], target.size_bytes, rescue_size=p["rescue_size"], filesystem=p["filesystem"],
                            fs_label=label, fs_uuid=uuid, disklabel=p["disklabel"], banks=banks,
                            mount_point=mount_point, rescue_image=p["rescue_image"],
                            rescue_image_bytes=image_bytes(p["rescue_image"]))
        result["steps"] = layout.steps
        facts = read_server_facts(bank_paths=banks, drive_labels=[label], drive_uuids=[uuid])
        confirm = p["confirm"]
        if module.check_mode and confirm != p["device"]:
            module.warn(f"dervish_prepare_drive_confirm is not {p['device']!r}: a real run would refuse")
            confirm = p["device"]
        check_target(p["device"], confirm, layout.needed_bytes, facts, confirm_variable="dervish_prepare_drive_confirm")
    except (DervishError, StepFailed) as exc:
        module.fail_json(msg=f"{exc}; nothing was changed", **result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    try:
        result["drive"] = execute(layout, p["drivelog"], result["log"])
    except (StepFailed, OSError) as exc:
        failed = result["log"][-1] if result["log"] else "before step 1"
        module.fail_json(msg=f"{failed} failed: {exc}; the disk {p['device']} is not a usable drive yet: "
                             "fix the cause and run the playbook again (it starts over)", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
