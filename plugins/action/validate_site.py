# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the whole backup site in the inventory before any host is changed."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.site_model import server_vaults, validate_site

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"


def role_options(role: str) -> dict:
    """The options of a role's main entry point, from its meta/argument_specs.yml."""
    with open(ROLES_DIR / role / "meta" / "argument_specs.yml", encoding="utf-8") as spec_file:
        return yaml.safe_load(spec_file)["argument_specs"]["main"]["options"]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        self.validate_argument_spec(argument_spec={})
        hostvars = task_vars["hostvars"]
        groups = task_vars["groups"]
        problems = validate_site(hostvars, groups, role_options("backup_client"), role_options("backup_server"))
        if problems:
            result["failed"] = True
            result["problems"] = problems
            result["msg"] = f"The inventory has {len(problems)} problem(s); nothing was changed:\n" + "\n".join(
                f"- {problem}" for problem in problems
            )
            return result
        servers = groups.get("backup_servers", [])
        result["changed"] = False
        result["vaults"] = {server: [v.name for v in server_vaults(server, hostvars, groups)] for server in servers}
        result["msg"] = f"site checked: {len(servers)} server(s), {len(groups.get('backup_clients', []))} client(s), " \
            f"{sum(len(names) for names in result['vaults'].values())} vault(s)"
        return result
