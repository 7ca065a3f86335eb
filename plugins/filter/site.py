# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory into the site's vaults."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.dervish.backup.plugins.module_utils.site_model import SiteError, cron_to_oncalendar
from ansible_collections.dervish.backup.plugins.module_utils.site_model import backup_server_of as _backup_server_of
from ansible_collections.dervish.backup.plugins.module_utils.site_model import client_vaults as _client_vaults
from ansible_collections.dervish.backup.plugins.module_utils.site_model import server_vaults as _server_vaults


def client_vaults(client_vars, client):
    """The vaults of one client, as dicts."""
    try:
        return [vault.as_dict() for vault in _client_vaults(client, client_vars)]
    except (SiteError, KeyError, TypeError) as err:
        raise AnsibleFilterError(f"{client}: cannot read its vaults: {err}") from err


def server_vaults(hostvars, server, groups):
    """Every vault a backup server backs up, as dicts."""
    try:
        return [vault.as_dict() for vault in _server_vaults(server, hostvars, groups)]
    except (SiteError, KeyError, TypeError) as err:
        raise AnsibleFilterError(f"{server}: cannot list the vaults it backs up: {err}") from err


def oncalendar(schedule):
    """systemd's OnCalendar= for a cron time (the nightly run's timer)."""
    try:
        return cron_to_oncalendar(str(schedule))
    except ValueError as err:
        raise AnsibleFilterError(f"cron time {schedule!r} has no systemd calendar equivalent: {err}; "
                                 "set backup_server_timer_oncalendar") from err


def backup_server_of(client, hostvars, groups):
    """The inventory name of the backup server that backs up ``client`` (for ``delegate_to``)."""
    try:
        return _backup_server_of(client, hostvars, groups)
    except SiteError as err:
        raise AnsibleFilterError(str(err)) from err
    except (KeyError, TypeError) as err:
        raise AnsibleFilterError(f"{client}: cannot find its backup server: {err}") from err


class FilterModule:
    def filters(self):
        return {"client_vaults": client_vaults, "server_vaults": server_vaults, "oncalendar": oncalendar,
                "backup_server_of": backup_server_of}
