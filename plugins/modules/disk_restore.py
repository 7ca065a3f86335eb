#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: disk_restore
short_description: Rebuild a client's disk from its backup onto a blank disk attached to the backup server
version_added: 0.1.0
description:
  - Bare-metal restore, the classic way - put the new disk into the backup server, restore, move it back.
    Run against a host of the group C(backup_clients) and delegated to that client's backup server; the
    action plugin resolves the client's vaults and server from the inventory (the same site model as the
    roles) and refuses a task that is not delegated to that server.
  - "On the server: one good image per vault is chosen (O(image)); the restore metadata of the image of the
    vault that holds C(/) (else of the first chosen image with metadata) gives the plan - the saved
    C(sfdisk) dump, each filesystem's type, UUID and label, the mount points from the client's fstab, which
    vault goes into which filesystem (longest mount-point prefix of its tree), what backups leave out, and
    the boot loader."
  - Before anything is written the target is checked (C(dervish_engine/disk_guard.py)) and refused, with one
    line saying why and what to do, when it is not a whole block device, is mounted or has a mounted
    partition, is swap in use or has holders, holds the server's running system or its backup drive (a
    bank's filesystem, or a partition with the drive's label or UUID), is smaller than the client's disk,
    or when O(confirm) is not exactly O(device).
  - The server is checked too, so that no step fails half-way after the disk was wiped - it must have every tool the
    plan runs (C(sfdisk), C(partx), C(rsync), each C(mkfs), C(grub-install) and GRUB's platform files for BIOS or EFI)
    and a kernel that mounts every new filesystem (built in, or a module of it), except vfat, which is written with
    C(mcopy) of mtools where the kernel cannot mount it (see below); what it lacks is named, with the Debian
    package that has it, and nothing is written.
  - "Then, each step logged as C(step N/M: ...): C(sfdisk) from the saved dump, C(partx -a) and the
    partitions' device nodes, C(mkfs) with the saved type, UUID and label (ext2/3/4, xfs, btrfs, vfat),
    C(mkswap -U -L), the filesystems mounted under a private temporary directory, C(rsync -aHAX
    --numeric-ids) of each vault's tree, C(/proc /sys /dev /run) (0755) and C(/tmp) (1777) and other mount
    points recreated where the image lacks them, C(grub-install) for BIOS (C(--target=i386-pc)) or EFI
    (C(--removable --no-nvram)); everything is unmounted at the end, also after a failure."
  - "An EFI system partition (vfat) on a server whose kernel cannot mount vfat is staged on a tmpfs that names the
    partition (so that C(grub-install) finds and probes it), filled by the copy and C(grub-install), and written into
    the partition with C(mcopy -s -p -m) as the step before unmounting."
  - The images are on the backup drive - hold it first with C(dervish.backup.backup_drive), as
    C(playbooks/bare_metal_restore.yml) does.
options:
  vaults:
    description: The client's vaults to restore from. Default - every vault of the client (set by the action plugin).
    type: list
    elements: str
  image:
    description:
      - Which image of each vault - C(latest) (the newest good image) or what the engine's image selection
        accepts (an image name, a date or date and time, a relative time such as C(3 days ago)).
    type: str
    default: latest
  device:
    description: The blank target disk on the server, a whole disk such as C(/dev/sdb). Everything on it is lost.
    type: str
    required: true
  confirm:
    description: Must be exactly O(device); anything else (or nothing) is refused and changes nothing.
    type: str
  confirm_variable:
    description: The name the refusal gives the confirmation (the playbook's variable).
    type: str
    default: confirm
  grow_last_partition:
    description: On a larger target, let the last partition fill the disk (its filesystem keeps its saved size).
    type: bool
    default: false
  boot_loader:
    description:
      - C(auto) - EFI when the client booted by EFI, BIOS GRUB when debconf says grub-pc was installed on a
        disk, else none; or C(bios), C(efi), C(none).
    type: str
    choices: [auto, bios, efi, none]
    default: auto
  disk:
    description: The client's disk to rebuild (kernel name such as C(sda)); default - the one holding C(/).
    type: str
  master:
    description: The dervish master configuration on the server.
    type: str
    default: /etc/dervish/master.conf
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: Chooses the images, plans and checks the target (all read-only); returns the plan, writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
    description: The action plugin resolves the client's vaults, images and server on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Rebuild laptop1's disk onto /dev/sdb of its backup server
  dervish.backup.disk_restore:
    device: /dev/sdb
    confirm: /dev/sdb
  delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"
"""

RETURN = r"""
plan:
  description: The plan as lines (also in check mode).
  returned: success or a refused target after planning
  type: list
  elements: str
plan_data:
  description: The plan as data (disk, partitions, placements, left-out dirs, boot loader).
  returned: success
  type: dict
images:
  description: Vault name -> image restored from.
  returned: success
  type: dict
log:
  description: Every step and command, as logged.
  returned: always
  type: list
  elements: str
phases:
  description: Seconds per phase (partition, mkfs, copy, boot loader).
  returned: changed
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import (
    bare_metal,
    disk_guard,
    disk_plan,
    disk_rebuild,
    select,
    summary,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError

# used by the engine's bare_metal: named here so that AnsiballZ surely ships them
ENGINE_MODULES = (select, summary, disk_plan, disk_rebuild)
DRIVE_TOOL = "/usr/local/sbin/dervish-backup"


def drive_spec(module):
    """The drive's LABEL=/UUID= as the nightly tool knows it (nothing with fixed banks)."""
    if not os.path.exists(DRIVE_TOOL):
        return [], []
    rc, out, _err = module.run_command([DRIVE_TOOL, "--holds"])
    labels, uuids = [], []
    for line in out.splitlines() if rc == 0 else []:
        if line.startswith("DRIVE=LABEL="):
            labels.append(line.split("=", 2)[2])
        elif line.startswith("DRIVE=UUID="):
            uuids.append(line.split("=", 2)[2])
    return labels, uuids


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vaults=dict(type="list", elements="str"),
            image=dict(type="str", default="latest"),
            device=dict(type="str", required=True),
            confirm=dict(type="str"),
            confirm_variable=dict(type="str", default="confirm"),
            grow_last_partition=dict(type="bool", default=False),
            boot_loader=dict(type="str", default="auto", choices=list(disk_plan.BOOT_LOADERS)),
            disk=dict(type="str"),
            master=dict(type="str", default="/etc/dervish/master.conf"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    log = []
    result = dict(changed=False, log=log)
    try:
        master = load_master(p["master"])
    except DervishError as exc:
        module.fail_json(msg=f"master: {exc}; provision the server first (playbooks/site.yml)", **result)
    labels, uuids = drive_spec(module)
    try:
        facts = disk_guard.read_server_facts(bank_paths=[str(b) for b in master.banks], drive_labels=labels,
                                             drive_uuids=uuids)
        prepared = bare_metal.prepare(master, p["vaults"] or [], p["image"], p["device"], p["confirm"], facts,
                                      disk=p["disk"], grow_last_partition=p["grow_last_partition"],
                                      boot_loader=p["boot_loader"], confirm_variable=p["confirm_variable"])
    except DervishError as exc:
        module.fail_json(msg=f"{exc}; nothing was written", **result)
    result.update(plan=prepared.plan.describe(), plan_data=prepared.plan.as_dict(), images=prepared.images_dict())
    if module.check_mode:
        result.update(changed=True, msg=f"would rebuild {p['device']} from {prepared.plan.image}")
        module.exit_json(**result)
    try:
        done = prepared.run(log.append)
    except DervishError as exc:
        module.fail_json(msg=str(exc), changed=True, **{k: v for k, v in result.items() if k != "changed"})
    result.update(changed=True, phases={k: round(v, 2) for k, v in done.phases.items()},
                  msg=f"rebuilt {p['device']} from {prepared.plan.image}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
