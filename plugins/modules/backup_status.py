#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backup_status
short_description: Report every vault of a backup server - last good image, age, last attempt, space, drive
version_added: 0.1.0
description:
  - Runs on a backup server and returns, per vault of every bank of the engine's master configuration, what
    C(dervish status --json) reports - the last good image and when it finished, its age, the last attempt and
    its status, the number of images (all and good), the space the last good image recorded (its size and what
    its run copied), whether it has C(metadata/), which drive holds the vault (the first line of C(DISKLABEL) at
    the root of the drive's filesystem) and the client the images are taken from.
  - Marks a vault C(stale) when its last good image finished more than O(max_age_hours) ago, or when it has no
    good image at all, and lists those vaults in RV(stale). The module itself does not fail for stale vaults;
    the playbook C(dervish.backup.status) does, so monitoring can run it.
  - Reads only the vault directories and the images' C(summary) files (with O(space), also walks every inode).
    It never changes anything, so it runs the same in check mode.
  - The banks must be mounted - hold the drive with M(dervish.backup.backup_drive) first; a missing bank fails
    the module, so that an unmounted drive never looks like a site without backups.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - dervish.backup.engine_banks
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  max_age_hours:
    description:
      - A vault whose last good image finished longer ago than this many hours is stale (so is one without a
        good image).
    type: float
    default: 48
  space:
    description:
      - Also measure each vault's real disk usage (C(bytes_used) in RV(vaults)) by walking every inode below it,
        counting hard links once. Slow on a big bank.
    type: bool
    default: false
  hosts:
    description:
      - Names to report the vaults under, by vault name, for example the inventory host of each vault's client.
        A vault not listed is reported under its summary's C(client:).
    type: dict
    default: {}
seealso:
  - module: dervish.backup.backup_drive
  - module: dervish.backup.expire
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read every vault's state
  dervish.backup.backup_status:
    max_age_hours: 26
  become: true
  register: backups

- name: Fail when a vault was not backed up for too long
  ansible.builtin.fail:
    msg: "stale vaults: {{ backups.stale | join(', ') }}"
  when: backups.stale | length > 0
"""

RETURN = r"""
vaults:
  description:
    - One entry per vault, sorted by bank and vault, with the fields of C(dervish status --json) and C(host),
      C(stale), C(age).
    - C(last_good) is the image name (None without a good image), C(last_good_complete) when it finished,
      C(age_seconds) how long ago (None without a good image), C(age) the same for people (C(1d02h)).
    - C(last_attempt), C(last_attempt_status) and C(last_attempt_begin) describe the newest image, good or not
      (C(last_attempt_status) is C(running) while a run holds the vault's lock).
    - C(images) counts the images, C(good_images) the good ones.
    - C(last_good_bytes) and C(last_good_new_bytes) are the last good image's size and what its run copied
      (None for an image Dirvish made); C(bytes_used) is measured only with O(space).
    - C(metadata) says whether the last good image has C(metadata/) (None without a good image).
    - C(disklabel) is the drive holding the vault (None when its filesystem has no C(DISKLABEL)).
    - C(client) is the summary's C(client:), C(host) the name from O(hosts) (else C(client)).
    - C(problems) lists images whose summary could not be read (also reported as warnings).
  returned: always
  type: list
  elements: dict
  sample:
    - vault: laptop1-home
      bank: /backup/dervish
      path: /backup/dervish/laptop1-home
      host: laptop1
      client: 192.0.2.11
      disklabel: offsite-1
      images: 15
      good_images: 14
      last_good: "20261203-0400"
      last_good_complete: "2026-12-03 04:12:40"
      age_seconds: 36000
      age: 10h00m
      last_attempt: "20261203-0400"
      last_attempt_begin: "2026-12-03 04:00:02"
      last_attempt_status: success
      last_good_bytes: 73400320
      last_good_new_bytes: 1048576
      bytes_used: null
      metadata: true
      running: false
      stale: false
      problems: []
stale:
  description: The names of the stale vaults (no good image, or the last one older than O(max_age_hours)).
  returned: always
  type: list
  elements: str
  sample: [firewall-etc]
missing_banks:
  description: Banks that are not directories (only in a failed result, with C(msg)).
  returned: always
  type: list
  elements: str
  sample: []
generated:
  description: When the status was read, in the server's local time.
  returned: always
  type: str
  sample: "2026-12-03 14:00:00"
max_age_hours:
  description: The limit the vaults were judged by.
  returned: always
  type: float
  sample: 48.0
table:
  description: The same as a table for people, one line per vault after a header line.
  returned: always
  type: list
  elements: str
  sample:
    - "HOST     VAULT         LAST GOOD      AGE    LAST ATTEMPT   STATUS   IMAGES  SIZE   META  DRIVE      STALE"
    - "laptop1  laptop1-home  20261203-0400  10h00m 20261203-0400  success  14/15   70.0M  yes   offsite-1  no"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.status import (
    collect,
    human_age,
    human_bytes,
    is_stale,
    status_doc,
)
from ansible_collections.dervish.backup.plugins.module_utils.engine_banks import master_with_banks

COLUMNS = ("HOST", "VAULT", "LAST GOOD", "AGE", "LAST ATTEMPT", "STATUS", "IMAGES", "SIZE", "META", "DRIVE",
           "STALE")


def _yes_no(value):
    return "-" if value is None else ("yes" if value else "no")


def render_table(rows):
    """Aligned lines; STATUS can be long (rsync's error), so it is padded like the others but STALE follows."""
    lines = [COLUMNS]
    for r in rows:
        lines.append((r["host"] or "-", r["vault"], r["last_good"] or "-", r["age"],
                      r["last_attempt"] or "-",
                      (r["last_attempt_status"] or "-") + (" [running]" if r["running"] else ""),
                      f"{r['good_images']}/{r['images']}", human_bytes(r["last_good_bytes"]),
                      _yes_no(r["metadata"]), r["disklabel"] or "-", _yes_no(r["stale"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="path"),
            max_age_hours=dict(type="float", default=48),
            space=dict(type="bool", default=False),
            hosts=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    limit_hours = module.params["max_age_hours"]
    result = dict(changed=False, vaults=[], stale=[], missing_banks=[], generated=None,
                  max_age_hours=limit_hours, table=[])
    if limit_hours < 0:
        module.fail_json(msg=f"max_age_hours: {limit_hours} is negative; expected a number of hours >= 0", **result)
    master = master_with_banks(module, result)
    try:
        rows = collect(master, with_usage=module.params["space"])
    except DervishError as exc:
        module.fail_json(msg=str(exc), **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot read the banks: {exc}", **result)
    doc = status_doc(rows)
    hosts = module.params["hosts"]
    for row, entry in zip(rows, doc["vaults"]):
        entry["stale"] = is_stale(row, limit_hours * 3600)
        entry["age"] = human_age(row.age_seconds)
        entry["host"] = str(hosts.get(row.vault) or row.client or "")
        for problem in row.problems:
            module.warn(f"vault {row.vault}: {problem}")
    rows = sorted(doc["vaults"], key=lambda entry: (entry["host"], entry["vault"], entry["bank"]))
    result.update(vaults=rows, generated=doc["generated"], stale=[entry["vault"] for entry in rows if entry["stale"]],
                  table=render_table(rows))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
