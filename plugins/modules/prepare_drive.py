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
      - When it does not exist and O(rescue_build) is true, it is built first (see O(rescue_build)) and kept, so every
        later drive gets the same image.
    type: path
    required: true
  rescue_build:
    description:
      - Build the rescue image when O(rescue_image) does not exist - a small Debian system made with C(debootstrap)
        from O(rescue_mirror) (kernel, GRUB for BIOS and EFI, partitioning, filesystem, C(rsync), network and
        editing tools, Python and the server's C(dervish) command), as an ext4 filesystem image labelled
        C(RESCUE), compressed by the suffix of O(rescue_image). It boots to a root shell on the first console and
        the serial port and brings up wired network by DHCP.
      - The build takes a few minutes and needs C(debootstrap) and the mirror. It runs after every check of the
        target passed and before the disk is touched; a failed build leaves neither an image nor a changed disk.
      - When false, a missing O(rescue_image) is an error.
    type: bool
    default: true
  rescue_suite:
    description: The Debian suite of a rescue image that is built.
    type: str
    default: bookworm
  rescue_mirror:
    description: The Debian mirror a rescue image is built from.
    type: str
    default: http://deb.debian.org/debian
  rescue_extra_packages:
    description: More packages for a rescue image that is built (e.g. V(mdadm) for a site with software RAID).
    type: list
    elements: str
    default: []
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

- name: The same, but never build a rescue image (fail if there is none)
  dervish.backup.prepare_drive:
    device: /dev/sdc
    confirm: /dev/sdc
    disklabel: backup-3
    rescue_image: /srv/images/rescue.img.xz
    rescue_build: false
  become: true
"""

RETURN = r"""
steps:
  description: The plan, one line per step (also in check mode); a rescue image that is to be built comes first.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.disk_guard import (
    check_target,
    describe_target,
    read_server_facts,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.drive_layout import parse_size, plan_drive
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.drive_prepare import (
    StepFailed,
    execute,
    image_bytes,
    read_drive,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.rescue_build import (
    RescueSource,
    build_rescue_image,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="path", required=True),
            confirm=dict(type="str", default=""),
            disklabel=dict(type="str", required=True),
            filesystem=dict(type="str", choices=["ext4", "btrfs"], default="ext4"),
            rescue_size=dict(type="str", default="1GiB"),
            rescue_image=dict(type="path", required=True),
            rescue_build=dict(type="bool", default=True),
            rescue_suite=dict(type="str", default="bookworm"),
            rescue_mirror=dict(type="str", default="http://deb.debian.org/debian"),
            rescue_extra_packages=dict(type="list", elements="str", default=[]),
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
        source = RescueSource(suite=p["rescue_suite"], mirror=p["rescue_mirror"],
                              extra_packages=tuple(p["rescue_extra_packages"]))
        build = not os.path.exists(p["rescue_image"])
        if build and not p["rescue_build"]:
            raise DervishError(f"dervish_prepare_drive_rescue_image: {p['rescue_image']} does not exist on this "
                               "server and dervish_prepare_drive_rescue_build is false: put the compressed rescue "
                               "image there, or let it be built")
        layout = plan_drive(p["device"], target.size_bytes, rescue_size=p["rescue_size"], filesystem=p["filesystem"],
                            fs_label=label, fs_uuid=uuid, disklabel=p["disklabel"], banks=banks,
                            mount_point=mount_point, rescue_image=p["rescue_image"],
                            rescue_image_bytes=None if build else image_bytes(p["rescue_image"]))
        result["steps"] = ([f"build the rescue image {p['rescue_image']} ({source.describe()}) and keep it"]
                           if build else []) + layout.steps
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
    if build:
        try:
            build_rescue_image(p["rescue_image"], source, parse_size(p["rescue_size"], "rescue_size"), result["log"])
        except (StepFailed, OSError) as exc:
            module.fail_json(msg=f"building the rescue image {p['rescue_image']} failed: {exc}; neither the image "
                                 f"nor the disk {p['device']} was written", **result)
    try:
        result["drive"] = execute(layout, p["drivelog"], result["log"])
    except (StepFailed, OSError) as exc:
        failed = result["log"][-1] if result["log"] else "before step 1"
        module.fail_json(msg=f"{failed} failed: {exc}; the disk {p['device']} is not a usable drive yet: "
                             "fix the cause and run the playbook again (it starts over)", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
