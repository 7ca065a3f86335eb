#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: snapshot
short_description: Back up a client now - one dervish image of each of its vaults, made on its backup server
version_added: 0.1.0
description:
  - Run against a host of the group C(backup_clients) and delegated to that client's backup server (the
    filter C(dervish.backup.backup_server_of) names it). The action plugin resolves, from the inventory and
    with the same site model as the roles and C(dervish.backup.validate_site), the client's vaults and its
    server, refuses a task that is not delegated to that server, and runs the module there.
  - On the server the module holds the backup drive (C(/usr/local/sbin/dervish-backup --acquire), which
    mounts it when needed, checks the banks, writes the drive log line and prepares the vault directories,
    exactly as the nightly run does) and makes one image of each selected vault with the dervish engine,
    the same code as C(dervish image). The server reaches the client with its own pinned key through the
    client's gate, as the nightly run does.
  - An absent or unusable drive fails the task at once with the drive tool's message; nothing is written.
  - A vault whose image fails fails the task, naming the vaults and their errors; the other vaults are
    still imaged. A vault that another run is imaging at the moment (the nightly run, another playbook)
    is reported as C(busy) with a warning and is not a failure; it is not imaged twice.
  - The module does not let the drive go. Release it at the end of the play with
    C(dervish.backup.backup_drive) (O(holder) as returned), in an C(always) section, as
    C(playbooks/backup.yml) does; a hold whose processes are gone ages out after a grace time.
  - Each vault's outcome is also appended to C(/var/log/dervish/backup.log) on the server.
options:
  vaults:
    description:
      - Names of the client's vaults to image. Default - every vault of the client.
      - A name that is not a vault of this client is an error. An empty list images nothing.
    type: list
    elements: str
  holder:
    description:
      - Name of the drive hold. Default - one name per ansible-playbook run,
        C(ansible-<controller host name>-<ansible-playbook PID>), shared by every host of the run, so the
        drive is mounted once.
      - Returned as RV(holder); release the drive with the same name.
    type: str
  master:
    description: The dervish master configuration on the server, as the role C(dervish.backup.backup_server) writes it.
    type: str
    default: /etc/dervish/master.conf
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: >-
      Reports, per vault, the image it would make and its reference image (when the bank is readable,
      e.g. on fixed banks or a drive mounted already); mounts nothing and creates nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
    description: The action plugin resolves the client's vaults and server on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  delegation:
    support: full
    description: Can be used in conjunction with C(delegate_to) and related keywords.
    details: The task must be delegated to the client's backup server; anything else is refused.
notes:
  - Needs root on the server (C(become)); the server must be provisioned with C(playbooks/site.yml) for the
    current inventory (the vault configurations and C(dervish-backup)).
  - The server's C(backup_server_max_parallel) limits the images made at once across every run on the
    server, Ansible forks and the nightly run included.
seealso:
  - module: dervish.backup.backup_drive
  - module: dervish.backup.host_metadata
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Back up this client now, on its backup server
  dervish.backup.snapshot:
  delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"
  become: true
  register: snapshot

- name: Back up only the home vault of laptop1, then let the drive go
  when: inventory_hostname == 'laptop1'
  block:
    - name: Back up laptop1-home
      dervish.backup.snapshot:
        vaults: [laptop1-home]
      delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"
      become: true
      register: snapshot
  always:
    - name: Let the backup drive go
      dervish.backup.backup_drive:
        state: released
        holder: "{{ snapshot.holder }}"
      delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"
      become: true
      when: snapshot.holder is defined
"""

RETURN = r"""
client:
  description: The client (inventory host) whose vaults were imaged.
  returned: always
  type: str
  sample: laptop1
server:
  description: Its backup server, where the module ran.
  returned: always
  type: str
  sample: backup
holder:
  description: The name the drive is held under; release it with C(dervish.backup.backup_drive).
  returned: always
  type: str
  sample: ansible-controller-4711
label:
  description: The C(DISKLABEL) of the drive the images went to (empty with fixed banks or in check mode).
  returned: success
  type: str
  sample: BACKUPDRIVE
images:
  description: One entry per selected vault, in the client's order.
  returned: always
  type: list
  elements: dict
  contains:
    vault:
      description: The vault.
      type: str
      sample: laptop1-home
    image:
      description: The image's name (in check mode, the name it would get).
      type: str
      sample: "20261203142501"
    status:
      description:
        - One word - V(success); V(warning) (a good image, but rsync warning 24, or a post hook, the index or
          the metadata failed); V(error) (a failed image, never a reference); V(busy) (another run was imaging
          the vault, nothing was written to it); V(would run) in check mode.
      type: str
      sample: success
    summary_status:
      description: The image summary's C(Status) text, e.g. C(error (23) -- partial transfer ...).
      type: str
      sample: success
    good:
      description: The image is good (C(success) or a warning) and will be the next image's reference.
      type: bool
      sample: true
    reference:
      description: The image it hard-links unchanged files against; null for a full copy or when unknown.
      type: str
      sample: "20261202040001"
    files_transferred:
      description: Files rsync copied (the rest are hard links); null when not known.
      type: int
      sample: 12
    bytes_transferred:
      description: Bytes rsync received from the client; null when not known.
      type: int
      sample: 40960
    image_bytes:
      description: Size of the files in the image's tree (the table's size); null when not known.
      type: int
      sample: 7340032
    new_bytes:
      description: Bytes of the files this image copied (not hard-linked); null when not known.
      type: int
      sample: 40960
    duration:
      description: Seconds the image took once it had its image slot.
      type: float
      sample: 3.21
    waited:
      description: Seconds it waited for an image slot (C(backup_server_max_parallel) images run at once).
      type: float
      sample: 0.0
    error:
      description:
        - Why the image failed (rsync's own error line when it had one), or who holds a busy vault; null otherwise.
      type: str
      sample: "rsync: change_dir \"/home\" failed: No such file or directory (2)"
    metadata:
      description: The summary's C(Metadata) value (C(ok), C(failed (reason)), C(none)); null when not known.
      type: str
      sample: ok
    messages:
      description: What the engine reported on the way (stale lock cleared, waiting for a slot, ...).
      type: list
      elements: str
      sample: []
"""

import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import hooks, index, space
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import (
    ConfigError,
    DervishError,
    LockedError,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.image import (
    BUSY,
    ERROR,
    SUCCESS,
    WARNING,
    ImageOptions,
    ImageRun,
    find_reference,
)

# The engine imports these through importlib while rsync runs, which AnsiballZ cannot see: named here
# so that they are shipped with the module.
LATE_ENGINE_MODULES = (hooks, index, space)
DRIVE_TOOL = "/usr/local/sbin/dervish-backup"
LOG = "/var/log/dervish/backup.log"
WOULD_RUN = "would run"
GOOD = (SUCCESS, WARNING)
RESULT_FIELDS = ("files_transferred", "bytes_transferred", "image_bytes", "new_bytes", "error", "metadata")


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwound like Ctrl-C, so the engine marks the running image interrupted."""


def _terminate(signum, frame):
    del frame
    raise Terminated(signal.Signals(signum).name)


def entry(vault, image=None, status=None, **fields):
    data = dict(vault=vault, image=image, status=status, summary_status=status, good=status in GOOD,
                reference=None, duration=None, waited=None, messages=[])
    data.update({name: None for name in RESULT_FIELDS})
    data.update(fields)
    return data


def from_result(result, messages):
    """A vault's entry from the engine's ImageResult."""
    data = result.as_dict()
    return entry(data["vault"], image=data["name"], status=data["status"], summary_status=data["summary_status"],
                 reference=data["reference"], duration=data["duration"], waited=data["waited"],
                 messages=messages + data["problems"], **{name: data[name] for name in RESULT_FIELDS})


def image_vault(master, vault):
    """Make one image of ``vault``; never raises for the vault's own problems."""
    messages = []
    started = time.monotonic()
    run = None
    try:
        run = ImageRun(master, vault, options=ImageOptions(), report=messages.append)
        result = run.run()
    except LockedError as exc:  # the engine reports a live lock as busy; a lock taken meanwhile still counts
        return entry(vault, image=run.name if run else None, status=BUSY, error=str(exc), messages=messages,
                     duration=round(time.monotonic() - started, 3))
    except DervishError as exc:
        return entry(vault, image=run.name if run else None, status=ERROR, error=str(exc), messages=messages,
                     duration=round(time.monotonic() - started, 3))
    return from_result(result, messages)


def plan_vault(master, vault):
    """What imaging ``vault`` would do, read only: its image name and reference when the bank is readable."""
    try:
        run = ImageRun(master, vault, options=ImageOptions(dry_run=True))
    except ConfigError as exc:
        # On an unmounted drive the vault is not in any bank yet: the run would mount it and prepare it.
        return entry(vault, status=WOULD_RUN, messages=[f"bank not readable now ({exc}): reference unknown"])
    try:
        ref = find_reference(run.vault_dir, run.branch, run.cfg.reference, bool(run.cfg.flags.get("init")))
    except DervishError as exc:
        return entry(vault, image=run.name, status=WOULD_RUN, messages=[f"the image would fail: {exc}"])
    return entry(vault, image=run.name, status=WOULD_RUN, reference=ref.image)


def log_line(message):
    """Append to the nightly run's log, so an operator finds on-demand images beside nightly ones."""
    try:
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {message}\n")
    except OSError:
        return  # a missing log directory must not fail a backup that worked


def acquire(module, holder, result):
    """Hold the drive through the tool the nightly run uses; fail at once when it is not usable."""
    if not os.path.exists(DRIVE_TOOL):
        module.fail_json(msg=f"{DRIVE_TOOL} is missing on this server: provision it first (playbooks/site.yml)",
                         **result)
    rc, out, err = module.run_command([DRIVE_TOOL, "--acquire", holder, "--pid", str(os.getpid())])
    if rc != 0:
        why = (err or out).strip() or "no message"
        module.fail_json(msg=f"the backup drive cannot be used (dervish-backup --acquire exited {rc}), "
                             f"nothing was backed up: {why}", rc=rc, **result)
    for line in out.splitlines():
        if line.startswith("DISKLABEL="):
            return line.split("=", 1)[1]
    return ""


def unconfigured(master, vaults):
    """The vaults that the server has no configuration for (the inventory is ahead of the server)."""
    confdir = Path(master.path).parent / "vaults"
    return [vault for vault in vaults if not (confdir / f"{vault}.conf").is_file()]


def failure_message(failed):
    return f"{len(failed)} vault(s) failed: " + "; ".join(f"{e['vault']}: {e['error'] or e['status']}" for e in failed)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vaults=dict(type="list", elements="str"),
            holder=dict(type="str"),
            master=dict(type="str", default="/etc/dervish/master.conf"),
        ),
        supports_check_mode=True,
    )
    vaults = module.params["vaults"] or []
    holder = module.params["holder"] or re.sub(r"[^A-Za-z0-9._-]", "-", f"ansible-{os.uname().nodename}-{os.getpid()}")
    result = dict(changed=False, holder=holder, images=[], label="")
    if not vaults:
        module.exit_json(msg="no vault selected", **result)
    try:
        master = load_master(module.params["master"])
    except DervishError as exc:
        module.fail_json(msg=f"master: {exc}; provision the server first (playbooks/site.yml)", **result)
    missing = unconfigured(master, vaults)
    if missing:
        module.fail_json(msg=f"vaults: {', '.join(missing)}: not configured on this server "
                             f"(no {Path(master.path).parent / 'vaults'}/<vault>.conf); run playbooks/site.yml "
                             "for the current inventory first", **result)

    if module.check_mode:
        result["images"] = [plan_vault(master, vault) for vault in vaults]
        result["changed"] = True  # as a real run would report: it would make the images
        result["msg"] = "would image " + ", ".join(vaults)
        module.exit_json(**result)

    result["label"] = acquire(module, holder, result)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    # Hooks and the engine's children must not write into the module's JSON on stdout.
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        for vault in vaults:
            item = image_vault(master, vault)
            result["images"].append(item)
            log_line(f"{holder}: {vault} image {item['image']}: {item['status']}")
    except Terminated as exc:
        os.dup2(saved_stdout, 1)
        module.fail_json(msg=f"terminated by {exc}: the running image is marked interrupted", **result)
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)

    images = result["images"]
    result["changed"] = any(item["status"] != BUSY for item in images)
    for item in images:
        if item["status"] == BUSY:
            module.warn(f"vault {item['vault']} is busy, not imaged again: {item['error']}")
    failed = [item for item in images if item["status"] != BUSY and not item["good"]]
    if failed:
        module.fail_json(msg=failure_message(failed), **result)
    result["msg"] = ", ".join(f"{item['vault']}: {item['status']}" for item in images)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
