#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_drive
short_description: Hold or release the backup server's drive
version_added: 0.1.0
author:
  - dervish developers (!UNKNOWN)
description:
  - Holds the backup drive of a dervish server for a holder (a playbook run), or releases that hold.
    Runs on the backup server, which the role P(dervish.backup.backup_server#role) provisioned.
  - A thin wrapper around the server's C(dervish-backup --acquire) and C(--release), the same code the
    nightly run uses, so that a playbook and a nightly run share the drive.
  - V(held) mounts the drive unless it is mounted (dervish records that it mounted it), checks the banks,
    prepares the vault directories, appends a line naming the holder to the drive log and registers the
    hold under C(/run/dervish/holds/).
  - A hold is live while its process (O(pid)) runs and for C(backup_server_drive_hold_grace) seconds
    after (15 minutes by default), so the next task of the same playbook run finds the drive mounted;
    a hold of an interrupted run ages out, and the next release or nightly run unmounts the drive.
  - V(released) drops the holder's hold; when no live hold remains and dervish mounted the drive, it is
    synced and unmounted. A drive mounted by hand stays mounted.
  - On a server whose banks are on a fixed path (no drive), V(held) checks the banks and nothing is mounted.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details:
      - The action plugin names the default O(holder).
      - A release outside check mode, with no other option than O(holder), runs the wrapper's
        C(--holds), C(--release) and C(--holds) as one plain command on the server, without shipping the
        module (a playbook run ends with a release, also after failures); the result is the module's.
        Everything else runs the module.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Reports whether the drive would be mounted or unmounted; mounts, unmounts and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description:
      - V(held) acquires a hold on the drive for O(holder); V(released) drops it.
    type: str
    choices: [held, released]
    default: held
  holder:
    description:
      - Who holds the drive, the same name for every task of one playbook run.
      - Default (set by the module's action plugin on the controller) C(ansible-<controller host>-<pid>),
        the pid being the C(ansible-playbook) process's, so every task of one run shares it and two
        runs do not.
      - 1 to 100 characters of C(A-Z a-z 0-9 . _ -), the first a letter or digit (it names a file).
    type: str
  pid:
    description:
      - With O(state=held), the process whose life keeps the hold live (plus the grace time).
      - Default is this module's own process, which ends with the task, so the hold lives for the grace
        time after the task.
    type: int
  wrapper:
    description:
      - The server's backup wrapper, installed by the role P(dervish.backup.backup_server#role).
    type: path
    default: /usr/local/sbin/dervish-backup
notes:
  - Exit codes of the wrapper are turned into failures with one clear message; an absent drive fails at
    once, and nothing is written but the drive log's C(NO-DRIVE) line.
"""

EXAMPLES = r"""
- name: Hold the backup drive for this playbook run (holder ansible-<controller>-<pid>)
  dervish.backup.backup_drive:
  register: drive

- name: Show which drive holds the images
  ansible.builtin.debug:
    msg: "{{ drive.label }} on {{ drive.mount_point }}"

- name: Release the drive (unmounted when nobody else holds it)
  dervish.backup.backup_drive:
    state: released

- name: Hold the drive while a long command of its own runs on the server
  dervish.backup.backup_drive:
    holder: offsite-copy
    pid: "{{ copy_job.pid }}"
"""

RETURN = r"""
label:
  description:
    - The drive's C(DISKLABEL) (first line of C(DISKLABEL) on the drive), C(NO-DISKLABEL(LABEL=...)) when
      it has none, C(fixed-banks) without a drive.
    - V(null) when the drive is not mounted (after a release, or in check mode before a mount).
  returned: always
  type: str
  sample: offsite-2
mount_point:
  description: Where the drive is mounted; V(null) on a server with banks on a fixed path.
  returned: always
  type: str
  sample: /backup
mounted:
  description: Whether the drive is mounted after the task (in check mode, would be).
  returned: always
  type: bool
  sample: true
holder:
  description: The holder the task acted for (the default one, when O(holder) was not given).
  returned: always
  type: str
  sample: ansible-ctl-4242
holds:
  description: The holders whose hold is live after the task (in check mode, before it).
  returned: always
  type: list
  elements: str
  sample: [ansible-ctl-4242, nightly-1234]
changed:
  description: The drive was mounted (V(held)) or unmounted (V(released)) by this task.
  returned: always
  type: bool
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.drive_holds import (
    DEFAULT_WRAPPER,
    HOLDER_RE,
    holds_failure,
    last_error,
    live_holders,
    parse_holds,
    planned,
    released,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["held", "released"], default="held"),
            holder=dict(type="str"),
            pid=dict(type="int"),
            wrapper=dict(type="path", default=DEFAULT_WRAPPER),
        ),
        supports_check_mode=True,
    )
    state, holder, pid, wrapper = (module.params[k] for k in ("state", "holder", "pid", "wrapper"))
    if not holder:
        module.fail_json(msg="holder is required (its action plugin names one by default; "
                             "is the collection's plugins/action missing?)")
    if not HOLDER_RE.match(holder):
        module.fail_json(msg=f"holder {holder!r} is not a valid holder name: expected 1-100 characters "
                             "A-Z a-z 0-9 . _ -, the first a letter or digit")
    if pid is not None and state != "held":
        module.fail_json(msg="pid goes with state=held only")
    if pid is not None and pid < 1:
        module.fail_json(msg=f"pid {pid} is not a process id: expected a positive integer")

    def holds():
        rc, out, err = module.run_command([wrapper, "--holds"])
        if rc != 0:
            module.fail_json(msg=holds_failure(wrapper, rc, err), rc=rc, stdout=out, stderr=err)
        return parse_holds(out)

    before = holds()
    drive = before.get("DRIVE", "")
    mount_point = before.get("MOUNT_POINT") or None
    result = dict(changed=False, mount_point=mount_point, holder=holder)

    if module.check_mode:
        if state == "held" and drive and before.get("MOUNTED") != "yes" and before.get("PRESENT") != "yes":
            module.fail_json(msg=f"backup drive {drive} is not present: nothing would be mounted or written",
                             **result)
        changed, mounted = planned(before, state, holder)
        label = (before.get("DISKLABEL") or None) if (mounted or not drive) else None
        module.exit_json(changed=changed, mounted=mounted, label=label, mount_point=mount_point,
                         holder=holder, holds=live_holders(before))

    if state == "released":
        rc, out, err = module.run_command([wrapper, "--release", holder])
        outcome = released(wrapper, holder, before, rc, err, holds() if rc == 0 else {"HOLD": []})
        if outcome.pop("failed", False):
            module.fail_json(stdout=out, stderr=err, **outcome)
        module.exit_json(stderr=err, **outcome)

    argv = [wrapper, "--acquire", holder] + (["--pid", str(pid)] if pid is not None else [])
    rc, out, err = module.run_command(argv)
    if rc != 0:
        why = last_error(err) or "no message"
        if rc == 2:
            after = holds()
            if drive and after.get("PRESENT") != "yes":
                msg = f"backup drive {drive} is absent: nothing was mounted or written ({why})"
            else:
                msg = f"the backup drive or a bank is not usable, nothing was held: {why}"
        elif rc == 64:
            msg = f"{wrapper} refused the request: {why}"
        else:
            msg = f"{' '.join(argv)} exited {rc}: {why}"
        module.fail_json(msg=msg, rc=rc, stdout=out, stderr=err, **result)

    after = holds()
    found = re.search(r"^DISKLABEL=(.*)$", out, re.M)
    label = found.group(1) if found else after.get("DISKLABEL") or None
    mounted = after.get("MOUNTED") == "yes"
    module.exit_json(changed=bool(drive) and (before.get("MOUNTED") == "yes") != mounted, mounted=mounted,
                     label=label, mount_point=mount_point, holder=holder, holds=live_holders(after), stderr=err)


if __name__ == "__main__":
    main()
