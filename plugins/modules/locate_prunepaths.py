#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: locate_prunepaths
short_description: Keep locate's nightly updatedb out of backup trees
version_added: 0.1.0
description:
  - Adds paths (typically the backup bank, such as C(/backup)) to C(PRUNEPATHS) in C(updatedb.conf),
    so that the nightly C(updatedb) of plocate or mlocate does not index millions of snapshot files.
  - Understands the formats used by plocate, mlocate and Debian's old findutils
    (C(PRUNEPATHS="/tmp /var/spool /media"), blanks around C(=), a trailing comment, C(export),
    single quotes or no quotes). Only the C(PRUNEPATHS) line changes; comments and the other variables
    (C(PRUNEFS), C(PRUNENAMES), C(PRUNE_BIND_MOUNTS)) stay byte-for-byte. Existing entries keep their
    order and spelling; new ones are appended. A missing C(PRUNEPATHS) line is appended to the file.
  - For old Red Hat systems running slocate, the C(-e) exclude list of the C(updatedb) or C(slocate -u)
    command line in the cron scripts of O(slocate_cron) gets the same paths, keeping its quoting and its
    separator (comma, or blanks). Cron scripts that do not exist are skipped.
  - Entries are compared without repeated or trailing slashes, and new entries are written that way,
    because updatedb compares C(PRUNEPATHS) literally and C(/backup/) would not prune C(/backup).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  paths:
    description:
      - Absolute directories to prune. They must not contain whitespace, quotes, backslashes or C($),
        since the lists are blank-separated and the files are read by shells; paths added to a slocate
        list must not contain C(,) either.
    type: list
    elements: path
    required: true
  state:
    description:
      - V(present) adds the O(paths) that are missing.
      - V(absent) removes only the listed O(paths); other entries stay.
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The updatedb configuration file.
    type: path
    default: /etc/updatedb.conf
  create:
    description:
      - Create O(path) when it does not exist, with a comment header and only C(PRUNEPATHS), so updatedb's
        built-in defaults still apply to everything else.
      - Defaults to V(true) because a missing file is exactly the case where updatedb indexes the backup
        trees (plocate's and mlocate's built-in C(PRUNEPATHS) is empty). Set V(false) on hosts where no
        locate package is installed and no file should appear.
    type: bool
    default: true
  slocate_cron:
    description:
      - Cron scripts of the old slocate package whose C(-e) list is edited as well, when they exist.
      - A new C(-e) option is added after the command when there is none; with O(state=absent) an C(-e)
        whose list becomes empty is removed.
    type: list
    elements: path
    default: [/etc/cron.daily/slocate.cron]
  backup:
    description:
      - Create a backup file of each changed file including the timestamp information so you can get the
        original file back if you somehow clobbered it incorrectly.
    type: bool
    default: false
notes:
  - plocate and mlocate only accept double-quoted values and refuse a variable set twice; the module warns
    when the file has such lines (it edits the last C(PRUNEPATHS), as a shell would use it).
  - When a single-entry unquoted value grows to several entries it is double-quoted.
seealso:
  - name: updatedb.conf(5)
    description: The configuration file of plocate's and mlocate's updatedb.
    link: https://manpages.debian.org/bookworm/plocate/updatedb.conf.5.en.html
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Keep the backup bank out of the locate database
  dervish.backup.locate_prunepaths:
    paths:
      - /backup

- name: Also prune a second bank, but never create updatedb.conf
  dervish.backup.locate_prunepaths:
    paths: [/backup, /srv/dervish]
    create: false

- name: Stop pruning a retired bank
  dervish.backup.locate_prunepaths:
    paths: [/srv/old-bank]
    state: absent
"""

RETURN = r"""
prunepaths:
  description: The entries of C(PRUNEPATHS) in O(path) afterwards (empty when the file does not exist).
  returned: always
  type: list
  elements: str
  sample: ["/tmp", "/var/spool", "/media", "/backup"]
slocate_excludes:
  description: For each existing cron script of O(slocate_cron), its C(-e) entries afterwards.
  returned: always
  type: dict
  sample: {"/etc/cron.daily/slocate.cron": ["/tmp", "/var/tmp", "/usr/tmp", "/afs", "/net", "/backup"]}
files_changed:
  description: The files that were changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["/etc/updatedb.conf"]
backup_files:
  description: The backup file made of each changed file, by file name.
  returned: changed and O(backup=true)
  type: dict
  sample: {"/etc/updatedb.conf": "/etc/updatedb.conf.2345.2026-11-26@14:30:02~"}
diff:
  description: One before/after pair per changed file.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
  sample: [{"before": "PRUNEPATHS=\"/tmp\"\n", "after": "PRUNEPATHS=\"/tmp /backup\"\n",
            "before_header": "/etc/updatedb.conf", "after_header": "/etc/updatedb.conf"}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.dervish.backup.plugins.module_utils.config_files import read_text, write_atomically
from ansible_collections.dervish.backup.plugins.module_utils.updatedb_conf import (
    PrunePathError,
    check_path,
    default_updatedb_conf,
    edit_slocate_cron,
    edit_updatedb_conf,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            path=dict(type="path", default="/etc/updatedb.conf"),
            create=dict(type="bool", default=True),
            slocate_cron=dict(type="list", elements="path", default=["/etc/cron.daily/slocate.cron"]),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    conf = params["path"]
    result = dict(changed=False, prunepaths=[], slocate_excludes={}, files_changed=[])

    try:
        paths = [check_path(p) for p in params["paths"]]
    except PrunePathError as exc:
        module.fail_json(msg=str(exc), **result)

    changes = []  # (path, before, after, existed)

    if os.path.isdir(conf):
        module.fail_json(msg=f"path: {conf} is a directory", **result)
    if os.path.exists(conf):
        try:
            before = read_text(conf)
        except OSError as exc:
            module.fail_json(msg=f"cannot read {conf}: {to_native(exc.strerror or exc)}", **result)
        edit = edit_updatedb_conf(before, paths, state)
        for warning in edit.warnings:
            module.warn(f"{conf}: {warning}")
        result["prunepaths"] = edit.entries
        if edit.changed:
            changes.append((conf, before, edit.text, True))
    elif state == "present" and params["create"] and paths:
        after = default_updatedb_conf(paths)
        result["prunepaths"] = list(dict.fromkeys(paths))
        changes.append((conf, "", after, False))

    for cron in params["slocate_cron"] or []:
        if not os.path.isfile(cron):
            continue
        try:
            before = read_text(cron)
        except OSError as exc:
            module.fail_json(msg=f"cannot read {cron}: {to_native(exc.strerror or exc)}", **result)
        try:
            edit = edit_slocate_cron(before, paths, state)
        except PrunePathError as exc:
            module.fail_json(msg=f"{cron}: {exc}", **result)
        for warning in edit.warnings:
            module.warn(f"{cron}: {warning}")
        result["slocate_excludes"][cron] = edit.entries
        if edit.changed:
            changes.append((cron, before, edit.text, True))

    if not changes:
        module.exit_json(**result)

    result["changed"] = True
    result["files_changed"] = [name for name, _b, _a, _e in changes]
    if module._diff:
        result["diff"] = [
            dict(before=before, after=after, before_header=name, after_header=name)
            for name, before, after, _existed in changes
        ]
    if not module.check_mode:
        backups = {}
        for name, _before, after, existed in changes:
            if params["backup"] and existed:
                backups[name] = module.backup_local(name)
            try:
                write_atomically(module, name, after)
            except OSError as exc:
                module.fail_json(msg=f"cannot write {name}: {to_native(exc.strerror or exc)}", **result)
        if backups:
            result["backup_files"] = backups
    module.exit_json(**result)


if __name__ == "__main__":
    main()
