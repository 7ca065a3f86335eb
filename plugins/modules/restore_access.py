#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restore_access
short_description: Let the backup server write one directory of this client, for one restore run only
version_added: 0.2.0
description:
  - >-
    With O(state=present), adds to root's C(authorized_keys) the one-time key of a restore run, as
    C(from="<server>",restrict,expiry-time="<UTC>Z",command="rrsync -wo <root>" <key>
    dervish-restore run=<id> expires=<epoch>), so it is usable from the server's address only, only by a
    write-only rsync confined to O(root), and not at all after its expiry (sshd refuses it, and the next
    cleanup removes the line). Returns the directory the key is limited to.
  - O(grants) gives several keys of one run, each with its own directory (a restore in place of paths in
    unrelated directories gets one key per directory, never one for their common parent); each gets
    such a line.
  - In place (O(create_root=false)), O(root) is the directory that holds the restored paths; when it is
    missing (a restore of a deleted directory), the nearest existing directory above it is used. A root
    that is or passes through a symlink is refused. With O(create_root=true) (a restore to another
    directory) O(root) is created, mode C(0700), when missing.
  - With O(state=absent), removes the lines of the run O(run_id), the lines whose expiry has passed, and
    the lines of runs of this controller that are over (a killed C(ansible-playbook); the action plugin
    tells which). Without O(run_id) only the last two, the cleanup after an interrupted run.
  - The nightly key's line (the gate) is never touched.
options:
  state:
    description:
      - V(present) adds the run's key, V(absent) removes it and stale ones, V(listed) only returns RV(runs).
    type: str
    choices: [present, absent, listed]
    default: present
  run_id:
    description: The restore run's id (from C(dervish.backup.restore)).
    type: str
    default: ""
  key:
    description: The one-time public key (O(state=present)).
    type: str
    default: ""
  from_address:
    description: The server's address (or comma-separated addresses) for C(from=) (O(state=present)).
    type: str
    default: ""
  root:
    description: The directory the key may write to (O(state=present)).
    type: str
    default: ""
  grants:
    description:
      - The run's keys, each with the directory it may write to (O(state=present)), instead of O(key) and O(root).
    type: list
    elements: dict
    default: []
    suboptions:
      key:
        description: A one-time public key.
        type: str
        required: true
      root:
        description: The directory that key may write to.
        type: str
        required: true
  create_root:
    description: Create O(root) (each grant's root) when missing (a restore to another directory).
    type: bool
    default: false
  lifetime:
    description: Minutes after which sshd refuses the key and any cleanup removes it.
    type: int
    default: 60
  over_runs:
    description: Ids of runs known to be over (set by the action plugin; their lines are removed).
    type: list
    elements: str
    default: []
  path:
    description: The C(authorized_keys) file.
    type: path
    default: /root/.ssh/authorized_keys
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Needs C(rrsync) on the client (Debian's C(rsync) package ships C(/usr/bin/rrsync)).
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Remove the one-time restore keys of runs that are over or expired
  dervish.backup.restore_access:
    state: absent
  become: true
"""

RETURN = r"""
root:
  description: The directory the (first) key is limited to (O(state=present)).
  returned: success
  type: str
  sample: /home/alice
roots:
  description: The directory each key is limited to, in the order of O(grants) (O(state=present)).
  returned: success
  type: list
  elements: str
  sample: [/etc, /home/alice]
lines:
  description: The lines added to C(authorized_keys), one per key (O(state=present)).
  returned: success
  type: list
  elements: str
removed:
  description: The removed lines' run ids (O(state=absent)).
  returned: success
  type: list
  elements: str
runs:
  description: The run ids of the restore lines found (before removal).
  returned: always
  type: list
  elements: str
"""

import os
import re
import shlex
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

MARK = "dervish-restore"
LINE_RE = re.compile(r"\s" + MARK + r" run=(?P<run>\S+) expires=(?P<expires>\d+)\s*$")
KEY_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]+={0,3}( .*)?$")
RRSYNC = ("/usr/bin/rrsync", "/usr/local/bin/rrsync")


def restore_lines(lines):
    """(index, run id, expiry epoch) of every restore line."""
    found = []
    for index, line in enumerate(lines):
        match = LINE_RE.search(line)
        if match and not line.lstrip().startswith("#"):
            found.append((index, match.group("run"), int(match.group("expires"))))
    return found


def read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def write(module, path, text):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".ansible-tmp-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)
    if os.path.exists(path):
        st = os.stat(path)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
    else:
        os.chmod(tmp, 0o600)
    module.atomic_move(tmp, path)


def find_root(module, root, create):
    """The directory the key is limited to: ``root`` (created when asked) or its nearest existing parent."""
    if not root.startswith("/") or ".." in root.split("/") or any(c in root for c in "\"\\\n\r\0"):
        module.fail_json(msg=f"root: {root!r} must be an absolute path without '..', quotes or backslashes")
    root = os.path.normpath(root)
    if create and not os.path.lexists(root):
        if not module.check_mode:
            os.makedirs(root, mode=0o700)
        return root
    here = root
    while not os.path.lexists(here):
        here = os.path.dirname(here)
    if os.path.realpath(here) != here or not os.path.isdir(here):
        module.fail_json(msg=f"{here} is a symlink, passes through one, or is not a directory: a restore writes "
                             "only into real directories; restore to another directory (dervish_restore_dest)")
    return here


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent", "listed"], default="present"),
            run_id=dict(type="str", default=""),
            key=dict(type="str", default="", no_log=False),
            from_address=dict(type="str", default=""),
            root=dict(type="str", default=""),
            grants=dict(type="list", elements="dict", default=[], options=dict(
                key=dict(type="str", required=True, no_log=False),
                root=dict(type="str", required=True))),
            create_root=dict(type="bool", default=False),
            lifetime=dict(type="int", default=60),
            over_runs=dict(type="list", elements="str", default=[]),
            path=dict(type="path", default="/root/.ssh/authorized_keys"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    before = read(path)
    lines = before.splitlines()
    found = restore_lines(lines)
    result = dict(changed=False, runs=sorted({run for dummy, run, dummy2 in found}))
    now = int(time.time())
    if p["state"] == "listed":
        module.exit_json(**result)
    if p["state"] == "absent":
        gone = {index: run for index, run, expires in found
                if run == p["run_id"] or expires <= now or run in p["over_runs"]}
        lines = [line for index, line in enumerate(lines) if index not in gone]
        result["removed"] = sorted(set(gone.values()))
    else:
        if not p["run_id"] or not re.fullmatch(r"[A-Za-z0-9.-]+", p["run_id"]):
            module.fail_json(msg=f"run_id: {p['run_id']!r} is not a run id")
        if p["grants"] and (p["key"] or p["root"]):
            module.fail_json(msg="grants: give either grants or key and root, not both")
        grants = p["grants"] or [{"key": p["key"], "root": p["root"]}]
        for number, grant in enumerate(grants):
            if not KEY_RE.match(grant["key"].strip()):
                module.fail_json(msg=f"key{'' if not p['grants'] else f' of grant {number + 1}'}: not an ed25519 "
                                     "public key ('ssh-ed25519 <base64> [comment]')")
        if not p["from_address"] or not re.fullmatch(r"[0-9A-Fa-f.:/,]+", p["from_address"]):
            module.fail_json(msg=f"from_address: {p['from_address']!r} is not an address list")
        rrsync = next((c for c in RRSYNC if os.access(c, os.X_OK)), None) or shutil.which("rrsync")
        if not rrsync:
            module.fail_json(msg="rrsync is not installed on this client (Debian's rsync package has /usr/bin/rrsync)")
        roots = [find_root(module, grant["root"], p["create_root"]) for grant in grants]
        expires = now + 60 * p["lifetime"]
        expiry = time.strftime("%Y%m%d%H%M%S", time.gmtime(expires))
        new_lines = [(f'from="{p["from_address"]}",restrict,expiry-time="{expiry}Z",'
                      f'command="{rrsync} -wo {shlex.quote(root)}" {" ".join(grant["key"].split()[:2])} '
                      f'{MARK} run={p["run_id"]} expires={expires}') for grant, root in zip(grants, roots)]
        this_run = {i for i, run, dummy in found if run == p["run_id"]}
        lines = [line for index, line in enumerate(lines) if index not in this_run] + new_lines
        result.update(root=roots[0], roots=roots, line=new_lines[0], lines=new_lines)
    after = "".join(line + "\n" for line in lines)
    if after != before:
        result["changed"] = True
        result["diff"] = dict(before_header=path, after_header=path, before=before, after=after)
        if not module.check_mode:
            write(module, path, after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
