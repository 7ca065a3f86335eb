# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rebuild a client's disk: resolve its vaults and server from the site model, run the module there.

As with ``snapshot``: the task is the client's, the work is its backup server's (the images and the
target disk are there), so the task must be delegated to that server; this plugin checks that and
fills in the client's vaults. Nothing else runs on the controller.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.action.snapshot import resolve_target
from ansible_collections.dervish.backup.plugins.module_utils.site_model import SiteError

MODULE = "dervish.backup.disk_restore"
ARGUMENT_SPEC = {
    "vaults": {"type": "list", "elements": "str"},
    "image": {"type": "str", "default": "latest"},
    "device": {"type": "str", "required": True},
    "confirm": {"type": "str"},
    "confirm_variable": {"type": "str", "default": "confirm"},
    "grow_last_partition": {"type": "bool", "default": False},
    "boot_loader": {"type": "str", "default": "auto", "choices": ["auto", "bios", "efi", "none"]},
    "disk": {"type": "str"},
    "master": {"type": "str", "default": "/etc/dervish/master.conf"},
}


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
            raise AnsibleActionFail(str(err).replace("dervish.backup.snapshot", MODULE)) from None
        if not target.vaults:
            raise AnsibleActionFail(f"{client}: no vault to restore from; nothing was written")
        module_args = {**args, "vaults": target.vaults}
        module_result = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
        result.update(module_result)
        result.update(client=target.client, server=target.server)
        return result
