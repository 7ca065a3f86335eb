"""The site model: vaults from inventory variables, and the checks that run before any change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.dervish.backup.plugins.module_utils.site_model import (
    SiteError,
    anchored_exclude,
    client_server,
    client_vaults,
    default_vault_name,
    server_vaults,
    validate_site,
)

ROLES = Path(__file__).resolve().parents[3] / "roles"


def spec(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]


def check(hostvars: dict, servers=("backup",), clients=None) -> list[str]:
    clients = list(clients or [host for host in hostvars if host not in servers])
    groups = {"backup_servers": list(servers), "backup_clients": clients}
    for host in [*groups["backup_servers"], *groups["backup_clients"]]:
        hostvars.setdefault(host, {})
    for server in servers:  # clients accept the server's key only from an address
        hostvars[server].setdefault("ansible_host", "192.0.2.10")
    return validate_site(hostvars, groups, spec("backup_client"), spec("backup_server"))


def test_default_vault_names_follow_the_filesystem() -> None:
    assert default_vault_name("laptop1", "/") == "laptop1-root"
    assert default_vault_name("laptop1", "/var/log/") == "laptop1-var-log"
    assert default_vault_name("laptop1", "/mnt/my data#1") == "laptop1-mnt-my-data-1"


@pytest.mark.parametrize(
    ("path", "tree", "pattern"),
    [("/spare", "/", "/spare/"), ("/home/a/tmp", "/home", "/a/tmp/"), ("/spare", "/home", None),
     ("/home", "/home", None), ("/homework", "/home", None)],
)
def test_exclude_paths_are_anchored_at_the_tree(path: str, tree: str, pattern: str | None) -> None:
    assert anchored_exclude(path, tree) == pattern


def test_vaults_default_to_one_per_filesystem_with_site_excludes() -> None:
    vaults = client_vaults("laptop1", {"backup_client_filesystems": ["/", "/home"], "ansible_host": "10.0.0.2",
                                       "backup_client_exclude_paths": ["/spare", "/home/x/scratch"],
                                       "backup_client_default_excludes": []})
    assert [(v.name, v.tree, v.address) for v in vaults] == [
        ("laptop1-root", "/", "10.0.0.2"), ("laptop1-home", "/home", "10.0.0.2")]
    assert vaults[0].excludes == ("/spare/", "/home/x/scratch/")
    assert vaults[1].excludes == ("/x/scratch/",)
    assert all(v.xdev for v in vaults)


def test_explicit_vaults_win_over_filesystems() -> None:
    vaults = client_vaults("fw", {"backup_client_filesystems": ["/", "/var"],
                                  "backup_client_vaults": [{"name": "fw-etc", "tree": "/etc", "xdev": False}]})
    assert [(v.name, v.tree, v.xdev) for v in vaults] == [("fw-etc", "/etc", False)]


def test_a_single_server_is_every_clients_server() -> None:
    assert client_server("laptop1", {}, ["backup"]) == "backup"


@pytest.mark.parametrize(
    ("client_vars", "servers", "message"),
    [({}, [], "no host in the group 'backup_servers'"),
     ({}, ["a", "b"], "backup_client_server is not set and the inventory has 2 backup servers (a, b)"),
     ({"backup_client_server": "nas"}, ["backup"], "backup_client_server is 'nas', which is not a host")],
)
def test_a_missing_server_is_named(client_vars: dict, servers: list, message: str) -> None:
    with pytest.raises(SiteError, match=r"^laptop1: ") as err:
        client_server("laptop1", client_vars, servers)
    assert message in str(err.value)


def test_server_vaults_collects_its_clients_only() -> None:
    hostvars = {"a": {}, "b": {}, "c1": {"backup_client_server": "a"},
                "c2": {"backup_client_server": "b", "backup_client_filesystems": ["/", "/home"]}}
    groups = {"backup_servers": ["a", "b"], "backup_clients": ["c1", "c2"]}
    assert [v.name for v in server_vaults("a", hostvars, groups)] == ["c1-root"]
    assert [v.name for v in server_vaults("b", hostvars, groups)] == ["c2-root", "c2-home"]


def test_a_sound_site_has_no_problems() -> None:
    assert check({"laptop1": {"backup_client_exclude_paths": ["/spare"]},
                  "laptop2": {"backup_client_vaults": [{"name": "l2-home", "tree": "/home", "excludes": ["*.tmp"]}]},
                  "backup": {"backup_server_expire_rules": ["* * * * 1 +3 months"]}}) == []


@pytest.mark.parametrize(
    ("hostvars", "expected"),
    [
        ({"laptop1": {"backup_client_vaults": "laptop1-root"}},
         "laptop1: Elements value for option 'backup_client_vaults' is of type str"),
        ({"laptop1": {"backup_client_vaults": [{"name": "v", "tree": "/", "exclude": ["x"]}]}},
         "laptop1: backup_client_vaults.exclude"),
        ({"laptop1": {"backup_client_vaults": [{"name": "v"}]}}, "laptop1: missing required arguments: tree"),
        ({"laptop1": {"backup_client_excludes": ["/spare"]}},
         "laptop1: unknown variable backup_client_excludes; did you mean backup_client_exclude_paths?"),
        ({"laptop1": {"backup_client_vaults": [{"name": "a", "tree": "/"}, {"name": "a", "tree": "/home"}]}},
         "laptop1: vault 'a' (backup_client_vaults) is twice in its backup_client_vaults"),
        ({"laptop1": {"backup_client_vaults": [{"name": "x", "tree": "/"}]},
          "laptop2": {"backup_client_vaults": [{"name": "x", "tree": "/"}]}},
         "laptop2: vault 'x' (backup_client_vaults) is also a vault of laptop1"),
        ({"laptop1": {"backup_client_vaults": [{"name": "bad name", "tree": "home"}]}},
         "laptop1: backup_client_vaults[0].name: invalid vault name 'bad name'"),
        ({"laptop1": {"backup_client_server": "nas"}}, "laptop1: backup_client_server is 'nas'"),
        ({"laptop1": {"backup_client_vaults": [{"name": "v", "tree": "/", "excludes": ["a\nb"]}]}},
         "laptop1: backup_client_vaults[0].excludes: 'a\\nb' spans several lines"),
        ({"laptop1": {"backup_client_vaults": [{"name": "v", "tree": "/", "rsync_options": ["--inplace"]}]}},
         "laptop1: backup_client_vaults[0].rsync_options: --inplace is not allowed"),
        ({"laptop1": {"backup_client_filesystems": ["home"]}},
         "laptop1: backup_client_filesystems: 'home' is not an absolute path"),
        ({"backup": {"backup_server_max_parallel": "many"}},
         "backup: argument 'backup_server_max_parallel' is of type"),
        ({"backup": {"backup_server_banks": ["/srv/bank"]}},
         "backup: backup_server_banks: '/srv/bank' is not below the drive's mount point '/backup'"),
    ],
)
def test_mistakes_are_reported_with_host_and_variable(hostvars: dict, expected: str) -> None:
    problems = check(hostvars)
    assert any(expected in problem for problem in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = check({"laptop1": {"backup_client_vaults": 3}, "laptop2": {"backup_client_server": "nas"}})
    assert {problem.split(":")[0] for problem in problems} == {"laptop1", "laptop2"}


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_shipped_inventories_are_sound(inventory: str) -> None:
    """What ansible-inventory reads from inventory/<name> passes every check of validate_site."""
    import json
    import os
    import subprocess
    import sys

    root = ROLES.parent
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(root / "inventory" / inventory), "--list"],
        capture_output=True, text=True, check=True, env={**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")},
    )
    data = json.loads(listed.stdout)
    groups = {name: data.get(name, {}).get("hosts", []) for name in ("backup_servers", "backup_clients")}
    assert groups["backup_servers"] and groups["backup_clients"]
    hostvars = data["_meta"]["hostvars"]
    for host_vars in hostvars.values():  # the lab reads the server's address from its hosts file
        if "{{" in str(host_vars.get("backup_server_address", "")):
            host_vars["backup_server_address"] = "127.0.10.1"
    assert validate_site(hostvars, groups, spec("backup_client"), spec("backup_server")) == []
    assert len(server_vaults(groups["backup_servers"][0], hostvars, groups)) >= 4
