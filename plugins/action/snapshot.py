# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back up one client now: resolve its vaults and server from the site model, run the module there.

The task is the client's (``hosts: backup_clients``), the work is the server's: the server reaches
the client with its own pinned key through the client's gate, as the nightly run does. So the task
must be delegated to the client's backup server; this plugin checks that, and nothing else runs on
the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.drive_holder import default_holder
from ansible_collections.dervish.backup.plugins.module_utils.site_model import (
    SiteError,
    backup_server_of,
    client_vaults,
)

MODULE = "dervish.backup.snapshot"
DEFAULT_MASTER = "/etc/dervish/master.conf"
ARGUMENT_SPEC = {
    "vaults": {"type": "list", "elements": "str"},
    "holder": {"type": "str"},
    "master": {"type": "str", "default": DEFAULT_MASTER},
}
DELEGATE_HINT = 'delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"'


@dataclass(frozen=True)
class Target:
    """Where and what one client's snapshot runs: its server and the names of the vaults to image."""

    client: str
    server: str
    vaults: List[str]


def resolve_target(client: str, hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                   delegate_to: Optional[str], selected: Optional[Sequence[str]] = None) -> Target:
    """The client's server and vaults (all, or ``selected`` in the client's order); SiteError when the
    inventory cannot say, a selected vault is not the client's, or the task does not run on that server."""
    server = backup_server_of(client, hostvars, groups)
    names = [vault.name for vault in client_vaults(client, hostvars[client])]
    if selected is not None:
        unknown = [name for name in selected if name not in names]
        if unknown:
            raise SiteError(f"{client}: vaults: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                            f"a vault of {client} (its vaults: {', '.join(names) or 'none'})")
        names = [name for name in names if name in selected]
    where = delegate_to or client
    if where != server:
        how = f"is delegated to {delegate_to}" if delegate_to else f"runs on {client} itself"
        raise SiteError(f"{client}: {MODULE} must run on {client}'s backup server {server}, but the task {how}; "
                        f"add {DELEGATE_HINT} to the task")
    return Target(client=client, server=server, vaults=names)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        client = task_vars["inventory_hostname"]
        try:
            target = resolve_target(client, task_vars["hostvars"], task_vars["groups"], self._task.delegate_to,
                                    args["vaults"])
        except SiteError as err:
            raise AnsibleActionFail(str(err)) from None
        # the name backup_drive gives this run too, so the playbook's release lets go of the same hold
        holder = args["holder"] or default_holder()
        result.update(client=target.client, server=target.server, holder=holder)
        if not target.vaults:  # vaults: [] selects none of them: nothing to hold or image
            result.update(changed=False, skipped=True, images=[], msg=f"{client}: no vault selected")
            return result
        module_result = self._execute_module(
            module_name=MODULE,
            module_args={"vaults": target.vaults, "holder": holder, "master": args["master"]},
            task_vars=task_vars,
        )
        result.update(module_result)
        result.update(client=target.client, server=target.server, holder=holder)
        return result
