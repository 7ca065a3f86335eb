"""The snapshot action plugin's resolution: a client's server and vaults from the site model, and the
refusal of a task that does not run on that server; the backup_server_of filter (same model)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dervish.backup.plugins.action import backup_drive, snapshot
from ansible_collections.dervish.backup.plugins.action.snapshot import DELEGATE_HINT, resolve_target
from ansible_collections.dervish.backup.plugins.filter.site import FilterModule
from ansible_collections.dervish.backup.plugins.module_utils.site_model import SiteError

GROUPS = {"backup_servers": ["backup", "nas"], "backup_clients": ["laptop1", "laptop2", "nas"]}
HOSTVARS = {
    "backup": {},
    "nas": {"backup_client_server": "nas", "backup_client_filesystems": ["/", "/srv"]},
    "laptop1": {"backup_client_server": "backup",
                "backup_client_vaults": [{"name": "laptop1-etc", "tree": "/etc"},
                                         {"name": "laptop1-home", "tree": "/home"}]},
    "laptop2": {"backup_client_vaults": [{"name": "laptop2-etc", "tree": "/etc"}]},
}
backup_server_of = FilterModule().filters()["backup_server_of"]


def test_a_client_resolves_to_its_server_and_all_its_vaults() -> None:
    target = resolve_target("laptop1", HOSTVARS, GROUPS, "backup")
    assert (target.server, target.vaults) == ("backup", ["laptop1-etc", "laptop1-home"])


def test_default_vaults_come_from_the_filesystems_as_the_roles_name_them() -> None:
    assert resolve_target("nas", HOSTVARS, GROUPS, "nas").vaults == ["nas-root", "nas-srv"]


def test_a_server_that_backs_itself_up_needs_no_delegation() -> None:
    assert resolve_target("nas", HOSTVARS, GROUPS, None).server == "nas"


def test_selected_vaults_keep_the_clients_order() -> None:
    target = resolve_target("laptop1", HOSTVARS, GROUPS, "backup", ["laptop1-home", "laptop1-etc"])
    assert target.vaults == ["laptop1-etc", "laptop1-home"]
    assert resolve_target("laptop1", HOSTVARS, GROUPS, "backup", []).vaults == []


def test_a_vault_of_another_client_is_refused_with_the_clients_vaults() -> None:
    with pytest.raises(SiteError) as err:
        resolve_target("laptop1", HOSTVARS, GROUPS, "backup", ["laptop2-etc"])
    assert str(err.value) == ("laptop1: vaults: laptop2-etc is not a vault of laptop1 "
                              "(its vaults: laptop1-etc, laptop1-home)")


def test_an_undelegated_task_is_refused_naming_host_server_and_fix() -> None:
    with pytest.raises(SiteError) as err:
        resolve_target("laptop1", HOSTVARS, GROUPS, None)
    assert str(err.value) == (
        "laptop1: dervish.backup.snapshot must run on laptop1's backup server backup, but the task runs on "
        f"laptop1 itself; add {DELEGATE_HINT} to the task")


def test_a_task_delegated_to_another_server_is_refused() -> None:
    with pytest.raises(SiteError, match="must run on laptop1's backup server backup, but the task is delegated to nas"):
        resolve_target("laptop1", HOSTVARS, GROUPS, "nas")


def test_a_host_outside_backup_clients_is_refused() -> None:
    with pytest.raises(SiteError, match="^backup: not a host of the group 'backup_clients'"):
        resolve_target("backup", HOSTVARS, GROUPS, "backup")


def test_an_unset_server_with_several_servers_is_refused_by_the_site_model() -> None:
    with pytest.raises(SiteError, match="^laptop2: backup_client_server is not set and the inventory has 2"):
        resolve_target("laptop2", HOSTVARS, GROUPS, "backup")


def test_the_filter_names_the_same_server() -> None:
    assert backup_server_of("laptop1", HOSTVARS, GROUPS) == "backup"
    assert backup_server_of("laptop2", HOSTVARS, {**GROUPS, "backup_servers": ["backup"]}) == "backup"
    with pytest.raises(AnsibleFilterError, match="^laptop1: backup_client_server is 'backup', which is not a host"):
        backup_server_of("laptop1", HOSTVARS, {**GROUPS, "backup_servers": ["nas"]})


def test_the_holder_is_the_one_backup_drive_names_for_this_run() -> None:
    import os
    assert snapshot.default_holder is backup_drive.default_holder
    assert snapshot.default_holder().endswith(f"-{os.getppid()}")
