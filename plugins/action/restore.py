# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore paths of a client: resolve each path's vault and the client's server from the site model,
and run the module on that server (the task is the client's, delegated to its server, as snapshot)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.drive_holder import default_holder
from ansible_collections.dervish.backup.plugins.module_utils.restore_run import is_over, run_id
from ansible_collections.dervish.backup.plugins.module_utils.site_model import (
    SiteError,
    backup_server_of,
    client_address,
    from_address,
    vault_of_path,
)

MODULE = "dervish.backup.restore"
ARGUMENT_SPEC = {
    "step": {"type": "str", "choices": ["prepare", "push", "finish"], "required": True},
    "paths": {"type": "list", "elements": "str", "default": []},
    "image": {"type": "str", "default": "latest"},
    "dest": {"type": "str", "default": ""},
    "delete": {"type": "bool", "default": False},
    "vault": {"type": "str", "default": ""},
    "run_id": {"type": "str", "default": ""},
    "roots": {"type": "list", "elements": "str", "default": []},
    "lifetime": {"type": "int", "default": 60},
    "images": {"type": "dict", "default": {}},
    "dry_run": {"type": "bool", "default": False},
    "holder": {"type": "str"},
    "master": {"type": "str", "default": "/etc/dervish/master.conf"},
}
DELEGATE_HINT = 'delegate_to: "{{ inventory_hostname | dervish.backup.backup_server_of(hostvars, groups) }}"'


def resolve_items(client, hostvars, paths, vault=""):
    """``[{path, vault}]``: each path with the vault whose tree holds it (SiteError naming the path)."""
    if not paths:
        raise SiteError(f"{client}: dervish_restore_paths is empty: name the client paths to restore, "
                        "e.g. -e '{\"dervish_restore_paths\": [\"/home/alice/doc.txt\"]}'")
    return [{"path": str(path), "vault": vault_of_path(client, hostvars[client], str(path), vault).name}
            for path in paths]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        client = task_vars["inventory_hostname"]
        hostvars, groups = task_vars["hostvars"], task_vars["groups"]
        try:
            server = backup_server_of(client, hostvars, groups)
            if (self._task.delegate_to or client) != server:
                raise SiteError(f"{client}: {MODULE} must run on {client}'s backup server {server}; "
                                f"add {DELEGATE_HINT} to the task")
            items = resolve_items(client, hostvars, args["paths"], args["vault"]) if args["step"] != "finish" else []
        except SiteError as err:
            raise AnsibleActionFail(str(err)) from None
        if not args["run_id"] and args["step"] == "prepare":
            args["run_id"] = run_id()
        keys = ("step", "image", "dest", "delete", "run_id", "roots", "lifetime", "master", "images", "dry_run")
        module_args = {key: args[key] for key in keys}
        module_args.update(items=items, client=client, address=client_address(client, hostvars[client]),
                           server_address=from_address(server, hostvars[server])[1],
                           holder=args["holder"] or default_holder())
        if args["step"] in ("prepare", "finish"):  # a killed run's key: only the controller knows it is over
            listing = self._execute_module(module_name=MODULE, module_args={**module_args, "step": "listed"},
                                           task_vars=task_vars)
            module_args["over_runs"] = [run for run in listing.get("runs", []) if is_over(run)]
        result.update(self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars))
        result.update(client=client, server=server)
        return result
