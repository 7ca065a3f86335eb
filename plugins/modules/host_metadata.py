#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_metadata
short_description: Collect the metadata needed to rebuild a host's disks before a restore
version_added: 0.1.0
description:
  - Collects what a bare-metal restore needs besides the backed-up trees, by running each tool with a fixed
    argument list (no shell) on the host - the partition table of every disk (C(sfdisk --dump), accepted as
    is by C(sfdisk) to recreate the table), C(lsblk --json) with types, sizes, UUIDs, labels and mount points,
    C(blkid), C(df), C(/etc/fstab), C(/etc/crypttab), C(/proc/mounts), C(/proc/swaps), md RAID (C(/proc/mdstat),
    C(mdadm --detail --scan --verbose)), LVM (C(pvs), C(vgs), C(lvs) as JSON), the boot loader (BIOS or EFI
    from C(/sys/firmware/efi), the EFI boot entries from C(efibootmgr -v), grub's install devices from
    debconf's C(grub-pc/install_devices)), the kernel (C(uname -a)), C(os-release), the host name and the
    installed package list (C(dpkg --get-selections), or C(rpm -qa)).
  - A tool that is not installed, or a feature that is absent (no md arrays, no LVM, no EFI, a disk without
    a partition table), is recorded as skipped, never an error. A tool that fails is recorded with its exit
    code and error output and reported as a warning; the module still succeeds, because partial metadata is
    better than none.
  - Disks are the top-level block devices of type C(disk) with a non-zero size, plus loop devices that carry
    a partition table (as in the lab, where loop devices stand in for disks).
  - The same code is the client's C(dervish-metadata) program that the nightly run calls through the gate,
    so the module and the nightly images record exactly the same items.
  - With O(dest), also writes the metadata layout on the host - one file per item (for example
    C(sfdisk/sda.dump), C(lsblk.json), C(blkid.txt), C(fstab), C(mdadm.conf), C(lvm.json), C(boot.json),
    C(packages.txt)) plus C(metadata.json) with everything. The layout is documented in the module utility
    C(dervish_engine/metadata_layout), which also writes it into every image the server's engine makes.
    It is written atomically (a temporary directory renamed into place), with the
    directory mode 0700 and the files 0600.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The tools only read; in check mode O(dest) is compared but not written.
  diff_mode:
    support: partial
    details: Lists the files of the layout in O(dest) that are added, changed or removed, not their contents.
  platform:
    platforms: posix
options:
  dest:
    description:
      - Directory to write the metadata layout as (for example C(/var/backups/dervish-metadata)). Its parent
        must exist. An existing directory is replaced as a whole, so files from an older run do not linger.
      - Nothing is written when the collected metadata equals what O(dest) already holds (the collection time
        alone is not a change).
      - When unset, the metadata is only returned.
    type: path
notes:
  - Run it as root (C(become)); otherwise the partition tables cannot be read and those items fail.
  - LVM and dm-crypt layouts are collected when the LVM tools are installed; the module does not look inside
    encrypted containers.
seealso:
  - name: sfdisk(8)
    description: The dump format, which C(sfdisk /dev/NEW < sda.dump) reads back.
    link: https://manpages.debian.org/bookworm/fdisk/sfdisk.8.en.html
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Collect the restore metadata and show the disks
  dervish.backup.host_metadata:
  become: true
  register: meta

- name: Show how the host boots
  ansible.builtin.debug:
    msg: "{{ meta.disks }} boot by {{ meta.boot.firmware }}"

- name: Keep a copy of the metadata on the host itself
  dervish.backup.host_metadata:
    dest: /var/backups/dervish-metadata
  become: true
"""

RETURN = r"""
metadata:
  description:
    - The whole collection, as C(dervish-metadata) prints it and as C(metadata.json) holds it.
    - C(items) maps each item name (C(lsblk), C(sfdisk/sda), C(blkid), C(df), C(fstab), C(crypttab), C(mounts),
      C(swaps), C(mdstat), C(mdadm), C(pvs), C(vgs), C(lvs), C(efibootmgr), C(grub-pc), C(os-release), C(uname),
      C(hostname), C(packages)) to its C(command) or C(source) file, C(rc), C(status), C(output), C(stderr)
      and parsed C(data).
    - "C(status) is one of C(ok), C(failed), C(skipped: tool missing) or C(skipped: not present)."
  returned: always
  type: dict
  sample:
    format: 1
    collected_at: "2026-12-03T11:40:02+0000"
    disks: [sda]
    boot: {firmware: bios, grub_install_devices: [/dev/sda], efi: null}
    items:
      sfdisk/sda:
        command: [sfdisk, --dump, /dev/sda]
        source: null
        rc: 0
        status: ok
        output: "label: gpt\nlabel-id: 3B8F2C1E-...\n"
        stderr: ""
        data: null
disks:
  description: Kernel names of the disks whose partition tables were dumped (or skipped).
  returned: always
  type: list
  elements: str
  sample: [sda, nvme0n1]
boot:
  description: C(firmware) (V(bios) or V(efi)), C(grub_install_devices) and the parsed C(efi) boot entries.
  returned: always
  type: dict
  sample:
    firmware: efi
    grub_install_devices: []
    efi:
      current: "0001"
      order: ["0001"]
      timeout: 1 seconds
      entries: [{number: "0001", active: true, label: debian, path: "HD(1,GPT,...)/File(\\EFI\\debian\\shimx64.efi)"}]
failed_items:
  description: Names of the items whose tool failed (each also reported as a warning).
  returned: always
  type: list
  elements: str
  sample: []
files:
  description: The files of the layout in O(dest) that were (or, in check mode, would be) added, changed or removed.
  returned: when O(dest) is set
  type: list
  elements: str
  sample: [metadata.json, df.txt]
dest:
  description: The absolute path of the layout directory.
  returned: when O(dest) is set
  type: str
  sample: /var/backups/dervish-metadata
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.metadata_layout import (
    MetadataError,
    layout_changes,
    write_metadata_dir,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_metadata import collect


def main():
    module = AnsibleModule(
        argument_spec=dict(dest=dict(type="path")),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    collection = collect()
    data = collection.to_dict()
    result = dict(changed=False, metadata=data, disks=data["disks"], boot=data["boot"],
                  failed_items=collection.failed)
    for name in collection.failed:
        item = collection.items[name]
        module.warn(f"{name}: {' '.join(item.command or [item.source or ''])} failed (rc {item.rc}): "
                    f"{item.stderr.strip()[:300]}")

    if dest:
        dest = os.path.abspath(dest)
        result["dest"] = dest
        if os.path.lexists(dest) and not os.path.isdir(dest):
            module.fail_json(msg=f"dest: {dest} exists and is not a directory", **result)
        if not os.path.isdir(os.path.dirname(dest)):
            module.fail_json(msg=f"dest: parent directory {os.path.dirname(dest)} does not exist", **result)
        try:
            changes = layout_changes(data, dest)
        except MetadataError as exc:
            module.fail_json(msg=str(exc), **result)
        result["files"] = sorted(changes)
        if changes:
            result["changed"] = True
            if module._diff:
                result["diff"] = dict(prepared="".join(f"{how} {dest}/{name}\n" for name, how in changes.items()))
            if not module.check_mode:
                try:
                    write_metadata_dir(data, dest)
                except MetadataError as exc:
                    module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
