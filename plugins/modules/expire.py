#!/usr/bin/python
# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: expire
short_description: Remove a backup server's expired images, as C(dervish expire) does
version_added: 0.1.0
description:
  - Runs on a backup server and removes the images whose C(Expire:) time has passed, in every bank of the
    engine's master configuration (or in one vault), with the engine's own rules, exactly what
    C(dervish expire) does - the newest good image of every vault and branch is always kept, even when it has
    expired; a failed or interrupted image goes only once its own C(Expire:) has passed; a vault locked by a
    running backup is left alone (RV(busy)); an image whose summary or C(Expire:) cannot be read is kept and
    reported.
  - A thin wrapper around the engine's C(expire) module utility (plan, then remove), so it returns the
    decisions as data instead of lines to parse.
  - The banks must be mounted - hold the drive with M(dervish.backup.backup_drive) first; a missing bank fails
    the module before anything is removed.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - dervish.backup.engine_banks
attributes:
  check_mode:
    support: full
    details: Returns in RV(removed) what would be removed (C(dervish expire --dry-run)) and removes nothing.
  diff_mode:
    support: full
    details: The removed images, one C(vault:branch:image) per line, as lines taken away.
  platform:
    platforms: posix
options:
  vault:
    description:
      - Only this vault (it must exist in a bank). When unset, every vault of every bank.
    type: str
notes:
  - The module fails (after removing what it could) when an image could not be removed or could not be judged,
    as C(dervish expire) exits 1 then; RV(removed) still lists what went.
seealso:
  - module: dervish.backup.backup_drive
  - module: dervish.backup.backup_status
author:
  - dervish developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: List what would be removed
  dervish.backup.expire:
  check_mode: true
  become: true
  register: would

- name: Remove the expired images of one vault
  dervish.backup.expire:
    vault: laptop1-home
  become: true
"""

RETURN = r"""
removed:
  description:
    - The images removed (in check mode, that would be removed), oldest first per vault and branch, each with
      C(vault), C(branch), C(image), C(path) and C(reason) (for example C(expired 2026-11-18 04:00:00)).
  returned: always
  type: list
  elements: dict
  sample:
    - {vault: laptop1-home, branch: default, image: "20261103-0400",
       path: /backup/dervish/laptop1-home/20261103-0400, reason: "expired 2026-11-18 04:00:00"}
kept_newest:
  description: Expired images kept because each is the newest good image of its vault and branch (same fields).
  returned: always
  type: list
  elements: dict
  sample:
    - {vault: firewall-etc, branch: default, image: "20261101-0400", path: /backup/dervish/firewall-etc/20261101-0400,
       reason: "expired, kept: newest good image of firewall-etc:default"}
busy:
  description: Expired images kept because a running backup holds their vault's lock (same fields).
  returned: always
  type: list
  elements: dict
  sample: []
errors:
  description:
    - Images that could not be removed, with C(error) besides the same fields (then the task fails).
  returned: always
  type: list
  elements: dict
  sample: []
messages:
  description:
    - One line per decision, as C(dervish expire) prints them - C(removed VAULT:BRANCH:IMAGE (REASON)) (in check
      mode C(would remove ...)), C(kept ...) for the newest good images that expired, C(busy ...), C(cannot remove ...).
  returned: always
  type: list
  elements: str
  sample: ["removed laptop1-home:default:20261103-0400 (expired 2026-11-18 04:00:00)",
           "kept firewall-etc:default:20261101-0400 (expired, kept: newest good image of firewall-etc:default)"]
problems:
  description: Images that could not be judged (summary unreadable, C(Expire:) unparsable); they are kept.
  returned: always
  type: list
  elements: str
  sample: []
"""

from datetime import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import find_vault_dir
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.expire import (
    apply_plan,
    plan_expiry,
    scan_images,
)
from ansible_collections.dervish.backup.plugins.module_utils.engine_banks import master_with_banks


def _entry(plan, im):
    return dict(vault=im.vault, branch=im.branch, image=im.name, path=str(im.path),
                reason=plan.reasons.get(str(im.path), ""))


def _label(entry):
    return f"{entry['vault']}:{entry['branch']}:{entry['image']}"


def main():
    module = AnsibleModule(
        argument_spec=dict(config=dict(type="path"), vault=dict(type="str")),
        supports_check_mode=True,
    )
    result = dict(changed=False, removed=[], kept_newest=[], busy=[], errors=[], problems=[], messages=[])
    master = master_with_banks(module, result, nothing_done="; nothing removed")
    try:
        if module.params["vault"] is not None:
            find_vault_dir(master, module.params["vault"])  # a misspelt vault is an error, not a quiet no-op
        plan = plan_expiry(scan_images(master.banks, module.params["vault"]), datetime.now())
        lines = []
        if not module.check_mode:
            apply_plan(plan, log=lines.append)  # rechecks each vault's lock right before removing
    except DervishError as exc:
        module.fail_json(msg=str(exc), **result)

    def error_of(im):
        prefix = f"cannot remove {im.vault}:{im.branch}:{im.name}: "
        return next((line for line in lines if line.startswith(prefix)), prefix.rstrip(": "))

    kept = {id(im) for im in plan.failed + plan.busy}
    gone = [im for im in plan.remove if id(im) not in kept]
    result.update(
        removed=[_entry(plan, im) for im in gone],
        kept_newest=[_entry(plan, im) for im in plan.kept_newest],
        busy=[_entry(plan, im) for im in plan.busy],
        errors=[dict(_entry(plan, im), error=error_of(im)) for im in plan.failed],
        problems=list(plan.problems),
        changed=bool(gone),
    )
    verb = "would remove" if module.check_mode else "removed"
    result["messages"] = (
        [f"{verb} {_label(e)} ({e['reason']})" for e in result["removed"]]
        + [f"kept {_label(e)} ({e['reason']})" for e in result["kept_newest"]]
        + [f"busy {_label(e)} ({e['reason']})" for e in result["busy"]]
        + [e["error"] for e in result["errors"]] + result["problems"])
    if gone and module._diff:
        result["diff"] = dict(before="".join(_label(e) + "\n" for e in result["removed"]), after="",
                              before_header="expired images", after_header="expired images after the run")
    if result["errors"] or result["problems"]:
        module.fail_json(msg="; ".join([e["error"] for e in result["errors"]] + result["problems"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
