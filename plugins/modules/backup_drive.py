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
attributes:
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
      - Who holds the drive, the same name for every task of one playbook run, for example
        C(ansible-<controller host>-<ansible-playbook pid>).
      - 1 to 100 characters of C(A-Z a-z 0-9 . _ -), the first a letter or digit (it names a file).
    type: str
    required: true
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
- name: Name this playbook run's hold once
  ansible.builtin.set_fact:
    drive_holder: "ansible-{{ lookup('ansible.builtin.pipe', 'hostname -s') }}-{{ now(fmt='%Y%m%d%H%M%S') }}"
  run_once: true

- name: Hold the backup drive for this playbook run
  dervish.backup.backup_drive:
    holder: "{{ drive_holder }}"
  register: drive

- name: Show which drive holds the images
  ansible.builtin.debug:
    msg: "{{ drive.label }} on {{ drive.mount_point }}"

- name: Release the drive (unmounted when nobody else holds it)
  dervish.backup.backup_drive:
    holder: "{{ drive_holder }}"
    state: released
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

HOLDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def parse_holds(text):
    """The wrapper's `--holds` KEY=VALUE lines as a dict; HOLD lines as a list of (holder, pid, live)."""
    info = {"HOLD": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "HOLD":
            fields = value.split()
            if len(fields) == 3:
                info["HOLD"].append((fields[0], fields[1], fields[2] == "live"))
        else:
            info[key] = value
    return info


def live_holders(info, without=None):
    return sorted({holder for holder, _pid, live in info["HOLD"] if live and holder != without})


def planned(info, state, holder):
    """What a run would do, from the state before it: (changed, mounted after)."""
    drive = bool(info.get("DRIVE"))
    mounted = info.get("MOUNTED") == "yes"
    if not drive:
        return False, False
    if state == "held":
        return not mounted, True
    unmounts = mounted and info.get("MOUNTED_BY_DERVISH") == "yes" and not live_holders(info, without=holder)
    return unmounts, mounted and not unmounts


def last_error(stderr):
    """The wrapper's last ERROR line (without its time stamp), else its last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line.split("ERROR: ", 1)[1] for line in lines if "ERROR: " in line]
    return errors[-1] if errors else (lines[-1] if lines else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["held", "released"], default="held"),
            holder=dict(type="str", required=True),
            pid=dict(type="int"),
            wrapper=dict(type="path", default="/usr/local/sbin/dervish-backup"),
        ),
        supports_check_mode=True,
    )
    state, holder, pid, wrapper = (module.params[k] for k in ("state", "holder", "pid", "wrapper"))
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
            module.fail_json(msg=f"{wrapper} --holds exited {rc}: {last_error(err) or 'no message'} "
                                 "(is this host a dervish backup server, provisioned by backup_server?)",
                             rc=rc, stdout=out, stderr=err)
        return parse_holds(out)

    before = holds()
    drive = before.get("DRIVE", "")
    mount_point = before.get("MOUNT_POINT") or None
    result = dict(changed=False, mount_point=mount_point)

    if module.check_mode:
        if state == "held" and drive and before.get("MOUNTED") != "yes" and before.get("PRESENT") != "yes":
            module.fail_json(msg=f"backup drive {drive} is not present: nothing would be mounted or written",
                             **result)
        changed, mounted = planned(before, state, holder)
        label = (before.get("DISKLABEL") or None) if (mounted or not drive) else None
        module.exit_json(changed=changed, mounted=mounted, label=label, mount_point=mount_point,
                         holds=live_holders(before))

    if state == "held":
        argv = [wrapper, "--acquire", holder] + (["--pid", str(pid)] if pid is not None else [])
    else:
        argv = [wrapper, "--release", holder]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        why = last_error(err) or "no message"
        if state == "held" and rc == 2:
            after = holds()
            if drive and after.get("PRESENT") != "yes":
                msg = f"backup drive {drive} is absent: nothing was mounted or written ({why})"
            else:
                msg = f"the backup drive or a bank is not usable, nothing was held: {why}"
        elif state == "released" and rc == 4:
            msg = (f"could not unmount the backup drive from {mount_point}: it is still mounted "
                   f"(is a process using it?); the hold of {holder} was dropped")
        elif rc == 64:
            msg = f"{wrapper} refused the request: {why}"
        else:
            msg = f"{' '.join(argv)} exited {rc}: {why}"
        module.fail_json(msg=msg, rc=rc, stdout=out, stderr=err, **result)

    after = holds()
    mounted = after.get("MOUNTED") == "yes"
    was_mounted = before.get("MOUNTED") == "yes"
    label = None
    if state == "held":
        found = re.search(r"^DISKLABEL=(.*)$", out, re.M)
        label = found.group(1) if found else after.get("DISKLABEL") or None
    elif mounted or not drive:
        label = after.get("DISKLABEL") or None
    module.exit_json(changed=bool(drive) and was_mounted != mounted, mounted=mounted, label=label,
                     mount_point=mount_point, holds=live_holders(after), stderr=err)


if __name__ == "__main__":
    main()
