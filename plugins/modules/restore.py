#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restore
short_description: Restore paths of a client from one of its images, pushed by its backup server with a one-time key
version_added: 0.2.0
description:
  - Run against a host of the group C(backup_clients) and delegated to that client's backup server (the
    filter C(dervish.backup.backup_server_of) names it). The action plugin resolves, with the site model
    of the roles, the vault whose tree holds each path (or the one named in O(vault)) and the server,
    refuses a task that is not delegated to that server, and runs the module there.
  - The restore is done in three steps, as C(playbooks/restore.yml) runs them. V(prepare) holds the
    backup drive (as C(dervish.backup.snapshot) does), chooses the image of each vault
    (C(dervish_engine.select), the rule of C(dervish restore)), checks that every path is in it and is
    safe, and makes one-time ed25519 keys for this run in C(/run/dervish/restore/<run id>-<client>/) (root only),
    one per target directory, which is O(dest), or in place the directory that holds a restored path (paths in
    unrelated directories get one key each, never one for their common parent, which may be C(/)).
    The client then authorises those keys for this run only (C(dervish.backup.restore_access)). V(push)
    copies the paths with C(rsync -aHAX --numeric-ids --relative) to the client, each through the key
    whose forced C(rrsync -wo) confines it to its target directory. V(finish) removes the run's key and the keys
    of runs whose lifetime has passed.
  - In check mode V(prepare) makes no key and V(push) writes nothing to the client; it compares the image
    with the client by a read-only dry run through the nightly key and the client's gate, in the reverse
    direction, and reports what the restore would change (C(--diff) shows the list). A target outside the
    trees the gate may read (another directory) is listed as if it were empty.
options:
  step:
    description: Which step of the restore to run (V(listed) only returns the runs that have keys on the server).
    type: str
    choices: [prepare, push, finish, listed]
    required: true
  paths:
    description: Absolute paths on the client to restore (files, directories, symlinks).
    type: list
    elements: str
    default: []
  image:
    description:
      - Which image - V(latest) (the newest good image), an image name, a date or time (V(2026-12-01) is the last
        image begun that day, V(2026-12-01 14:00)), or a relative time (V(3 days ago), V(-3d)). Failed images are
        never chosen.
    type: str
    default: latest
  dest:
    description:
      - Empty - restore in place. Else an absolute directory on the client that gets each path below it, at
        C(<dest>/<client path>); created (mode C(0700)) when missing.
    type: str
    default: ""
  delete:
    description: Delete files below a restored directory that the image does not have (else they are kept).
    type: bool
    default: false
  vault:
    description: The vault to restore from. Default - for each path, the client's vault whose tree holds it.
    type: str
    default: ""
  run_id:
    description: The run's id (returned by V(prepare); give it to the later steps).
    type: str
    default: ""
  roots:
    description:
      - The directories the client authorised the keys for, in the order of RV(grants) (what
        C(dervish.backup.restore_access) returned as RV(dervish.backup.restore_access#module:roots)).
    type: list
    elements: str
    default: []
  lifetime:
    description: Minutes the one-time key may be used to connect; its keys are removed after that by any later run.
    type: int
    default: 60
  images:
    description: Per vault, the image to use (V(push); what V(prepare) returned as RV(images)), instead of O(image).
    type: dict
    default: {}
  dry_run:
    description:
      - V(prepare) makes no key (for a check-mode run, where the task itself runs with C(check_mode=false) to read the
        images).
    type: bool
    default: false
  holder:
    description:
      - Name of the drive hold (default - one per ansible-playbook run).
      - Release it with C(dervish.backup.backup_drive).
    type: str
  master:
    description: The dervish master configuration on the server.
    type: str
    default: /etc/dervish/master.conf
  over_runs:
    description: Set by the action plugin - runs of this controller that are over; their keys are removed.
    type: list
    elements: str
    default: []
  items:
    description: Set by the action plugin - each path with its vault (C(path), C(vault)).
    type: list
    elements: dict
    default: []
  client:
    description: Set by the action plugin - the client's inventory name.
    type: str
    required: true
  address:
    description: Set by the action plugin - how the server reaches the client (its vaults' C(client:)).
    type: str
    required: true
  server_address:
    description: Set by the action plugin - the server's address the client accepts the key from.
    type: str
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: Holds the drive to read the images (released by the playbook), makes no key and writes nothing.
  diff_mode:
    support: full
    details: V(push) returns rsync's itemized list of what is (or would be) changed, with client paths.
  platform:
    platforms: posix
  action:
    support: full
    description: The action plugin resolves each path's vault and the client's server on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  delegation:
    support: full
    description: Can be used in conjunction with C(delegate_to) and related keywords.
    details: The task must be delegated to the client's backup server.
seealso:
  - module: dervish.backup.restore_access
  - module: dervish.backup.backup_drive
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Choose the image and make the one-time key
  dervish.backup.restore:
    step: prepare
    paths: [/home/alice/doc.txt]
    image: 3 days ago
  delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"
  become: true
  register: prepared
"""

RETURN = r"""
run_id:
  description: The run's id, carried by the key's line on the client.
  returned: always
  type: str
  sample: controller.4711.123456
holder:
  description: The drive hold's name.
  returned: always
  type: str
grants:
  description:
    - The one-time keys' public halves (not in check mode), each with the target directory it should be limited to
      (V(prepare)); give them to C(dervish.backup.restore_access) as its O(dervish.backup.restore_access#module:grants).
  returned: success
  type: list
  elements: dict
  sample: [{root: /home/alice, key: "ssh-ed25519 AAAA... dervish-restore run=controller.4711.123456"}]
roots:
  description: The target directories (V(prepare), V(push)).
  returned: success
  type: list
  elements: str
  sample: [/etc, /home/alice]
create_root:
  description: Whether the client should create the target directory (a restore to another directory).
  returned: success
  type: bool
from:
  description: The server's address, for the key's C(from=).
  returned: success
  type: str
images:
  description: Per vault, the image chosen.
  returned: success
  type: dict
  sample: {laptop1-home: "2026-12-01_04:00"}
changes:
  description: rsync's itemized lines (V(push)), each with the client path; in check mode what would change.
  returned: success
  type: list
  elements: str
"""

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import (
    find_vault_dir,
    load_master,
    load_vault,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.restore import (
    RSYNC_RESTORE,
    RestoreError,
    client_path,
    client_tree,
    is_change,
    plan,
    relative_path,
    rsync_argv,
    run_rsync,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.select import (
    image_tree,
    select_image,
)

KEYS = "/run/dervish/restore"
DRIVE_TOOL = "/usr/local/sbin/dervish-backup"
LOG = "/var/log/dervish/backup.log"


def acquire(module, holder):
    if not os.path.exists(DRIVE_TOOL):
        module.fail_json(msg=f"{DRIVE_TOOL} is missing on this server: provision it first (playbooks/site.yml)")
    rc, out, err = module.run_command([DRIVE_TOOL, "--acquire", holder, "--pid", str(os.getpid())])
    if rc != 0:
        module.fail_json(msg=f"the backup drive cannot be used (dervish-backup --acquire exited {rc}), nothing "
                             f"was restored: {(err or out).strip() or 'no message'}", rc=rc)


def target_roots(directories):
    """The fewest directories that hold all of ``directories``: each one, less those inside another."""
    roots = []
    for directory in sorted(set(directories), key=lambda d: (d.rstrip("/").count("/"), d)):
        if root_of(directory, roots) is None:
            roots.append(directory)
    return sorted(roots)


def root_of(directory, roots):
    """The index of the root in ``roots`` that holds ``directory`` (None: none does)."""
    for index, root in enumerate(roots):
        if root == "/" or directory == root or directory.startswith(root.rstrip("/") + "/"):
            return index
    return None


def ssh_command(rsh, key):
    """The vault's rsh (pinned host keys, timeouts) with the one-time key as the only identity."""
    words = shlex.split(rsh or "ssh")
    cleaned, index = [], 0
    while index < len(words):
        word = words[index]
        if word == "-i" or (word == "-o" and index + 1 < len(words)
                            and words[index + 1].lower().startswith("identityfile")):
            index += 2  # the option and its value: the vault's own key is not offered
            continue
        if word.startswith("-i") or word.lower().startswith(("-oidentityfile", "identityfile")):
            index += 1
            continue
        cleaned.append(word)
        index += 1
    # a dead or hung client costs a bounded time, as in the engine's image runs
    given = " ".join(cleaned).lower()
    bounds = [f"{name}={value}" for name, value in (("ConnectTimeout", 30), ("ServerAliveInterval", 20))
              if name.lower() not in given]
    extra = [word for opt in bounds for word in ("-o", opt)]
    return shlex.join(cleaned[:1] + ["-i", key, "-o", "IdentitiesOnly=yes"] + extra + cleaned[1:])


class Restore:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.run_id = self.p["run_id"]
        # one key per run and client: a client whose restore failed removes its key while others still push
        client = re.sub(r"[^A-Za-z0-9._-]", "-", self.p["client"])
        self.key_dir = Path(KEYS) / f"{self.run_id}-{client}" if self.run_id else None
        try:
            self.master = load_master(self.p["master"])
        except DervishError as exc:
            module.fail_json(msg=f"master: {exc}; provision the server first (playbooks/site.yml)")

    def fail(self, msg, **kw):
        self.module.fail_json(msg=msg, run_id=self.run_id, holder=self.p["holder"], **kw)

    def selected(self):
        """Per vault: (image, client tree, [rel paths in the order given])."""
        chosen = {}
        for item in self.p["items"]:
            vault = item["vault"]
            if vault not in chosen:
                spec = self.p["images"].get(vault) or self.p["image"]
                image = select_image(find_vault_dir(self.master, vault), spec)
                chosen[vault] = (image, client_tree(image), [])
            image, tree, rels = chosen[vault]
            rels.append(relative_path(item["path"], tree))
        return chosen

    def where_tree(self, tree):
        dest = self.p["dest"]
        return posixpath.join(dest, tree.lstrip("/")) if dest and tree != "/" else (dest or tree)

    def wanted_roots(self, chosen):
        """The target directories, one key each: the destination, or the directories of the paths."""
        if self.p["dest"]:
            return [posixpath.normpath(self.p["dest"])]
        return target_roots(posixpath.dirname(client_path(tree, rel)) or "/"
                            for image, tree, rels in chosen.values() for rel in rels)

    def groups(self, chosen, wanted):
        """(root index, vault, image, tree, rels): the paths of each vault that go below each root."""
        out = []
        for vault, (image, tree, rels) in chosen.items():
            by_root = {}
            for rel in rels:
                index = 0 if self.p["dest"] else root_of(posixpath.dirname(client_path(tree, rel)) or "/", wanted)
                by_root.setdefault(index, []).append(rel)
            out += [(index, vault, image, tree, group) for index, group in sorted(by_root.items())]
        return out

    def prepare(self):
        dest = self.p["dest"]
        if dest and (not dest.startswith("/") or ".." in dest.split("/")):
            self.fail(f"dervish_restore_dest: {dest!r} is not an absolute path without '..' (or '' for in place)")
        acquire(self.module, self.p["holder"])
        self.cleanup_expired()
        chosen = self.selected()
        roots = self.wanted_roots(chosen)
        for index, _vault, image, tree, rels in self.groups(chosen, roots):  # every path there and safe
            plan(image_tree(image), tree, rels, self.where_tree(tree), roots[index])
        result = dict(changed=False, run_id=self.run_id, holder=self.p["holder"], roots=roots,
                      grants=[{"root": root} for root in roots], create_root=bool(dest),
                      images={v: c[0].name for v, c in chosen.items()}, **{"from": self.p["server_address"]})
        if self.module.check_mode or self.p["dry_run"]:
            return result
        self.key_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(self.key_dir.parent, 0o700)
        for index, grant in enumerate(result["grants"]):
            key = self.key_dir / f"key-{index}"
            if not key.exists():
                self.module.run_command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                         f"dervish-restore run={self.run_id}", "-f", str(key)], check_rc=True)
            grant["key"] = key.with_name(key.name + ".pub").read_text().strip()
        (self.key_dir / "expires").write_text(str(int(time.time()) + 60 * self.p["lifetime"]))
        result.update(changed=True)
        return result

    def push(self):
        acquire(self.module, self.p["holder"])  # renewed for this process: a long copy keeps the drive
        chosen = self.selected()
        wanted = self.wanted_roots(chosen)
        roots = self.p["roots"] or wanted
        if len(roots) != len(wanted):
            self.fail(f"roots: {len(roots)} target directories given for the {len(wanted)} of this restore "
                      f"({', '.join(wanted)}); give what restore_access returned")
        if self.module.check_mode:
            return self.dry_run(chosen, roots)
        changes, images = [], {v: c[0].name for v, c in chosen.items()}
        for index, vault, image, tree, rels in self.groups(chosen, wanted):
            key = self.key_dir / f"key-{index}"
            if not key.is_file():
                self.fail(f"no one-time key for run {self.run_id} on this server (step prepare did not run)")
            rsh = ssh_command(load_vault(self.master, vault).rsh, str(key))
            root = roots[index]
            for transfer in plan(image_tree(image), tree, rels, self.where_tree(tree), root):
                argv = rsync_argv(image_tree(image), transfer, f"{self.p['address']}:", self.p["delete"], rsh=rsh)
                lines = run_rsync(argv)
                prefix = posixpath.normpath(posixpath.join(root, transfer.dest))
                changes += [label(line, prefix) for line in lines]
                log_line(f"{self.p['holder']}: restored {', '.join(transfer.items)} of {vault} image "
                         f"{image.name} to {self.p['client']}:{prefix}")
        changed = any(is_change(line) for line in changes)
        return dict(changed=changed, run_id=self.run_id, images=images, roots=roots, changes=changes,
                    diff={"prepared": "\n".join(changes) + "\n"} if self.module._diff else {})

    def dry_run(self, chosen, roots):
        """What push would change, read only: the client's side through the nightly gate, in reverse."""
        changes, images, warnings = [], {}, []
        for vault, (image, tree, rels) in chosen.items():
            images[vault] = image.name
            cfg = load_vault(self.master, vault)
            for rel in rels:
                source = image_tree(image) / ("" if rel == "." else rel)
                target = client_path(self.where_tree(tree), rel) if self.p["dest"] else client_path(tree, rel)
                lines, why = None, ""
                if not self.p["dest"]:
                    lines, why = reverse_dry_run(cfg.rsh, self.p["address"], target, source, self.p["delete"])
                else:
                    why = f"{target} is not in a tree the gate lets the server read"
                if lines is None:
                    warnings.append(f"{target}: listed as if absent on the client ({why})")
                    lines = as_new(image_tree(image), rel, self.where_tree(tree))
                changes += lines
        for warning in warnings:
            self.module.warn(warning)
        return dict(changed=any(is_change(line) for line in changes), run_id=self.run_id, images=images,
                    roots=roots, changes=changes,
                    diff={"prepared": "\n".join(changes) + "\n"} if self.module._diff else {})

    def finish(self):
        removed = False
        if self.module.check_mode:
            return dict(changed=False, run_id=self.run_id)
        if self.key_dir is not None and self.key_dir.exists():
            shutil.rmtree(self.key_dir)
            removed = True
        removed = self.cleanup_expired() or removed
        return dict(changed=removed, run_id=self.run_id)

    def listed(self):
        """The run ids that have keys here (the action plugin tells which of them are over)."""
        base = Path(KEYS)
        runs = sorted({run_of(entry.name) for entry in base.iterdir()}) if base.is_dir() else []
        return dict(changed=False, run_id=self.run_id, runs=runs)

    def cleanup_expired(self):
        """Remove the keys of runs whose lifetime has passed or that are over (a killed run's key)."""
        removed = False
        base = Path(KEYS)
        if self.module.check_mode or not base.is_dir():
            return False
        for entry in base.iterdir():
            try:
                expires = int((entry / "expires").read_text().strip())
            except (OSError, ValueError):
                expires = int(entry.stat().st_mtime) + 24 * 3600
            over = run_of(entry.name) in self.p["over_runs"]
            if (expires < time.time() or over) and entry != self.key_dir:
                shutil.rmtree(entry, ignore_errors=True)
                removed = True
        return removed


def run_of(name):
    """The run id of a key directory ``<host>.<pid>.<ticks>-<client>``."""
    parts = name.split(".", 2)
    return name if len(parts) < 3 else ".".join(parts[:2] + [parts[2].split("-", 1)[0]])


def label(line, prefix):
    """rsync's itemized line with the client path instead of the name relative to the transfer."""
    if line.startswith("*deleting"):
        flag, name = line[:12], line[12:].lstrip()
    else:
        flag, name = line[:12], line[12:]
    link = ""
    if flag.startswith("h") and " => " in name:  # a hard link names its first path, also relative to the transfer
        name, first = name.split(" => ", 1)
        link = " => " + posixpath.normpath(posixpath.join(prefix, first))
    return flag + posixpath.normpath(posixpath.join(prefix, name)) + ("/" if name.endswith("/") else "") + link


def reverse_dry_run(rsh, address, target, source, delete):
    """Compare the client's ``target`` with the image's ``source`` by pulling through the nightly gate
    with ``--dry-run`` (the image is never written: rsync -n). Returns (forward lines, "") or (None, why)."""
    is_dir = source.is_dir() and not source.is_symlink()
    argv = [*RSYNC_RESTORE[:2], "--numeric-ids", "--itemize-changes", "--dry-run", "--delete", "-e", rsh,
            f"{address}:{target}" + ("/" if is_dir else ""), str(source) + ("/" if is_dir else "")]
    if "--dry-run" not in argv:  # the image is the receiver here: it must never be written
        raise AssertionError("a reverse rsync without --dry-run")
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode not in (0, 24):
        err = proc.stderr.decode("utf-8", "backslashreplace").strip().splitlines()
        return None, f"rsync exited {proc.returncode}: {'; '.join(err[:2]) or 'no message'}"
    forward = []
    for line in proc.stdout.decode("utf-8", "backslashreplace").splitlines():
        if not is_change(line):
            continue
        name = line[12:].lstrip() if line.startswith("*deleting") else line[12:]
        path = target if name in ("./", ".") and is_dir else (
            posixpath.join(target, name) if is_dir else target)
        if line.startswith("*deleting"):  # in the image, not on the client: the restore creates it
            kind = "d" if name.endswith("/") else "f"
            forward.append(f"{'c' if kind == 'd' else '>'}{kind}+++++++++ {path}")
        elif line[2:11] == "+++++++++":  # on the client only: kept, or deleted with delete
            if delete:
                forward.append(f"*deleting   {path}")
        else:
            forward.append(f"{'>' if line[1] == 'f' else line[0]}{line[1:12]}{path}")
    return forward, ""


def as_new(tree_dir, rel, where_tree):
    """Everything below ``rel`` in the image, itemized as a copy into an empty target would be."""
    source = tree_dir / ("" if rel == "." else rel)
    argv = [*RSYNC_RESTORE, "--dry-run", f"{tree_dir}/./{rel}" + ("/" if source.is_dir() else ""),
            "/nonexistent/dervish-restore-dry-run/"]
    return [label(line, where_tree) for line in run_rsync(argv)]


def log_line(message):
    try:
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    except OSError:
        return


def main():
    module = AnsibleModule(
        argument_spec=dict(
            step=dict(type="str", choices=["prepare", "push", "finish", "listed"], required=True),
            over_runs=dict(type="list", elements="str", default=[]),
            items=dict(type="list", elements="dict", default=[]),
            client=dict(type="str", required=True),
            address=dict(type="str", required=True),
            server_address=dict(type="str", required=True),
            image=dict(type="str", default="latest"),
            dest=dict(type="str", default=""),
            delete=dict(type="bool", default=False),
            run_id=dict(type="str", default=""),
            roots=dict(type="list", elements="str", default=[]),
            lifetime=dict(type="int", default=60),
            images=dict(type="dict", default={}),
            dry_run=dict(type="bool", default=False),
            holder=dict(type="str"),
            paths=dict(type="list", elements="str", default=[]),
            vault=dict(type="str", default=""),
            master=dict(type="str", default="/etc/dervish/master.conf"),
        ),
        supports_check_mode=True,
    )
    if not module.params["holder"]:
        module.params["holder"] = re.sub(r"[^A-Za-z0-9._-]", "-", f"ansible-{os.uname().nodename}-{os.getpid()}")
    restore = Restore(module)
    try:
        result = getattr(restore, module.params["step"])()
    except (DervishError, RestoreError) as exc:
        restore.fail(f"{module.params['client']}: {exc}; nothing was restored" if module.params["step"] != "push"
                     else f"{module.params['client']}: {exc}")
    result.setdefault("holder", module.params["holder"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
