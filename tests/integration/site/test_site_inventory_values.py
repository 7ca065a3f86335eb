"""A wrong inventory value fails the real site.yml before any host changes (issue 7, items I, 14, 16).

Each value below used to pass ``--check`` and then fail (or deploy) half-way through a real run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _edit(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    path.write_text(yaml.safe_dump({**(data or {}), **changes}))


@pytest.mark.parametrize("check", [True, False], ids=["check-mode", "real-run"])
def test_wrong_values_fail_before_any_host_changes(lab: Lab, tmp_path: Path, check: bool) -> None:
    inventory = lab_inventory(tmp_path)
    _edit(inventory / "group_vars" / "backup_servers.yml",
          backup_server_banks=["/backup/../srv/bank"],
          backup_server_schedule="0 4 * * *\n* * * * * root touch /tmp/injected",
          backup_server_expire_rules=["* * * * 1 +3 months", "garbage"])
    _edit(inventory / "host_vars" / "laptop1.yml",
          backup_client_vaults=[{"name": "laptop1-etc", "tree": "/etc/../root", "expire_default": "soon"}],
          backup_client_gate_commands={"df": "bin/df"})
    master_before = lab.ssh(lab.server, "cat /etc/dervish/master.conf 2>/dev/null; true").stdout
    run = run_playbook(lab, "site.yml", inventory=inventory, check=check)
    assert run.rc != 0, run.stdout[-4000:]
    assert run.changed_hosts == set(), run.changed
    for expected in (
        "backup: backup_server_banks[0]: bank '/backup/../srv/bank' contains a '..' component",
        "backup: backup_server_schedule: the value spans several lines",
        "laptop1: backup_client_vaults[0].tree: tree '/etc/../root' contains a '..' component",
        "laptop1: backup_client_gate_commands.df: program 'bin/df' is not absolute",
    ):
        assert expected in run.stdout, run.stdout[-4000:]
    assert lab.ssh(lab.server, "cat /etc/dervish/master.conf 2>/dev/null; true").stdout == master_before
    assert lab.ssh(lab.server, "grep -rs injected /etc/cron.d/", check=False).returncode != 0


def test_engine_values_fail_before_any_host_changes(lab: Lab, tmp_path: Path) -> None:
    """Garbage the engine refuses is named by variable, not by an Ansible temp file half-way."""
    inventory = lab_inventory(tmp_path)
    _edit(inventory / "group_vars" / "backup_servers.yml", backup_server_expire_default="garbage",
          backup_server_expire_rules=["* * * * 1 +3 months", "garbage"])
    _edit(inventory / "host_vars" / "laptop2.yml",
          backup_client_vaults=[{"name": "laptop2-etc", "tree": "/etc", "expire_rules": ["* * * * 9 +1 day"]}])
    run = run_playbook(lab, "site.yml", inventory=inventory, check=True)
    assert run.rc != 0
    assert run.changed_hosts == set(), run.changed
    assert "backup: backup_server_expire_default: invalid expire spec 'garbage'" in run.stdout, run.stdout[-4000:]
    assert "backup: backup_server_expire_rules[1]: invalid expire rule 'garbage'" in run.stdout
    assert "laptop2: backup_client_vaults[0].expire_rules[0]: " in run.stdout
    assert "/tmp/ansible" not in run.stdout and ".ansible/tmp" not in run.stdout


def test_a_server_address_that_is_a_host_name_fails_before_any_host_changes(lab: Lab, tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path)
    _edit(inventory / "group_vars" / "backup_servers.yml", backup_server_address="backup.lab.invalid")
    run = run_playbook(lab, "site.yml", inventory=inventory, check=True)
    assert run.rc != 0
    assert run.changed_hosts == set(), run.changed
    assert "backup: backup_server_address 'backup.lab.invalid' is not an IP address" in run.stdout, run.stdout[-4000:]
    assert "UseDNS" in run.stdout


def test_a_drive_given_by_its_uuid_alone_is_provisioned(lab: Lab, tmp_path: Path) -> None:
    """``backup_server_drive: {uuid: ...}`` (as the README suggests) gets the default mount point."""
    loop = (lab.dir / "drive.loop").read_text().strip()
    uuid = lab.ssh(lab.server, f"blkid -s UUID -o value {loop}p2").stdout.strip()
    assert uuid
    inventory = lab_inventory(tmp_path)
    _edit(inventory / "group_vars" / "backup_servers.yml", backup_server_drive={"uuid": uuid})
    run = run_playbook(lab, "site.yml", inventory=inventory)
    try:
        assert run.rc == 0, run.stdout[-6000:]
        wrapper = lab.ssh(lab.server, "cat /usr/local/sbin/dervish-backup").stdout
        assert f"DRIVE_SPEC=UUID={uuid} " in wrapper or f"DRIVE_SPEC='UUID={uuid}'" in wrapper, wrapper[:2000]
        assert "MOUNT_POINT=/backup\n" in wrapper and "MOUNT_OPTIONS=noatime\n" in wrapper
        # the role's prepare step mounted the drive by its UUID and created the bank on it
        lab.ssh(lab.server, f"mount UUID={uuid} /backup")
        try:
            assert lab.ssh(lab.server, "test -d /backup/dervish", check=False).returncode == 0
        finally:
            lab.ssh(lab.server, "umount /backup")
    finally:
        back = run_playbook(lab, "site.yml")
        assert back.rc == 0, back.stdout[-4000:]
