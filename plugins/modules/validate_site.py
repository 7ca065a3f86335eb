# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate_site
short_description: Check a dervish backup site in the inventory before anything changes
version_added: 0.1.0
description:
  - Reads the variables of every host of the groups C(backup_servers) and C(backup_clients) and
    checks them against the argument specs of the roles C(dervish.backup.backup_server) and
    C(dervish.backup.backup_client) (types, unknown variables and vault keys).
  - Then it checks the site as a whole. Every client's server exists, vault names are unique per
    server, trees and excluded paths are absolute, and banks lie on the backup drive.
  - Every value is checked by the parser that reads it on the hosts, so a value that passes here is
    not refused later in the run. The master and vault configurations are rendered as the role
    writes them and loaded by the engine's configuration loader (expiry specs and rules,
    C(Runall-jobs), C(rsync-timeout), banks). The gate's configuration (trees, C(backup_client_gate_commands))
    is parsed by the gate's own parser, which refuses C(..) components and relative programs.
  - Values must be one line; C(backup_server_schedule) must be a cron time (five fields or a macro
    such as C(@daily)); the address clients accept the server's key from (C(backup_server_address)
    or C(ansible_host)) must be an IP address, as sshd matches host names in C(from=) only with
    C(UseDNS yes).
  - Fails with one line per problem, each naming the host and the variable, so a playbook that
    runs it first changes no host when the inventory is wrong.
  - Runs on the controller only; run it once (C(run_once)).
author:
  - dervish developers (!UNKNOWN)
options: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: all
  action:
    support: full
    description: Runs on the controller as an action plugin.
  bypass_host_loop:
    support: none
    description: Runs per host; use C(run_once) to check the site once.
"""

EXAMPLES = r"""
- name: Check the inventory before changing anything
  dervish.backup.validate_site:
  run_once: true
"""

RETURN = r"""
problems:
  description: One message per problem found, each naming the host and the variable.
  returned: failure
  type: list
  elements: str
  sample: ["laptop2: backup_client_server is 'nas', which is not a host of the group 'backup_servers'"]
vaults:
  description: The vault names each backup server backs up.
  returned: success
  type: dict
  sample: {backup: [laptop1-root, laptop2-root]}
"""
