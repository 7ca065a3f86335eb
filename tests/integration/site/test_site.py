"""playbooks/site.yml against the lab: converge, stay idempotent, and do what the roles promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
CLIENTS = ("laptop1", "laptop2", "firewall")
VAULTS = ("laptop1-etc", "laptop1-home", "laptop2-etc", "firewall-etc")
KEY = "/root/.ssh/dervish_backup_ed25519"


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    # other test files provision the session's lab too: these tests start from new, bare hosts
    lab.down()
    lab.up()
    first = run_playbook(lab, "site.yml")
    assert first.rc == 0, first.stdout[-6000:]
    return first


def test_site_converges_then_changes_nothing(lab: Lab, provisioned) -> None:
    assert provisioned.changed_hosts == {"backup", *CLIENTS}, provisioned.changed
    second = run_playbook(lab, "site.yml")
    assert second.rc == 0, second.stdout[-4000:]
    assert second.changed_hosts == set(), second.changed


def test_check_mode_after_converging_reports_no_change(lab: Lab, provisioned) -> None:
    run = run_playbook(lab, "site.yml", check=True)
    assert run.rc == 0, run.stdout[-4000:]
    assert run.changed_hosts == set(), run.changed


def test_server_has_engine_key_configs_and_pinned_host_keys(lab: Lab, provisioned) -> None:
    assert lab.ssh(lab.server, "/usr/local/sbin/dervish --version").stdout.startswith("dervish ")
    assert lab.ssh(lab.server, f"stat -c %a {KEY} /etc/dervish /etc/dervish/master.conf").stdout.split() == [
        "600", "700", "600"]
    lab.ssh(lab.server, "dervish --config /etc/dervish/master.conf check --master-only")
    master = lab.ssh(lab.server, "cat /etc/dervish/master.conf").stdout
    assert re.search(r"^Runall:\n\tlaptop1-etc\n\tlaptop1-home\n\tlaptop2-etc\n\tfirewall-etc\n", master, re.M), master
    known = lab.ssh(lab.server, "cat /root/.ssh/known_hosts").stdout
    for client in CLIENTS:
        host_key = lab.ssh(client, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        assert f"{client} ssh-ed25519 {host_key}" in known


def _server_ssh(lab: Lab, target: str, command: str, host: str | None = None):
    return lab.ssh(host or lab.server, f"ssh -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=yes "
                                       f"-o UserKnownHostsFile=/root/.ssh/known_hosts {target} {command}", check=False)


def test_server_key_reads_a_client_and_nothing_else(lab: Lab, provisioned) -> None:
    laptop1 = "laptop1"
    read = lab.ssh(lab.server, f"rsync -a -e 'ssh -i {KEY} -o BatchMode=yes' {laptop1}:/etc/hostname /tmp/h "
                               "&& cat /tmp/h", check=False)
    assert read.returncode == 0 and read.stdout.strip() == "laptop1", read.stderr
    write = lab.ssh(lab.server, f"echo x > /tmp/planted && rsync -a -e 'ssh -i {KEY} -o BatchMode=yes' "
                                f"/tmp/planted {laptop1}:/tmp/planted", check=False)
    assert write.returncode != 0
    assert lab.ssh("laptop1", "test -e /tmp/planted", check=False).returncode == 1
    for command in ("id", "sh -c id", "'rsync --server -vlogDtpre.iLsfxCIvu . /tmp/'"):
        refused = _server_ssh(lab, laptop1, command)
        assert refused.returncode != 0 and "uid=" not in refused.stdout, command
    assert " REFUSE " in lab.ssh("laptop1", "cat /var/log/dervish-gate.log").stdout


def test_server_key_is_useless_from_another_address(lab: Lab, provisioned) -> None:
    key = lab.ssh(lab.server, f"cat {KEY}").stdout
    lab.ssh("laptop2", "umask 077 && cat > /tmp/stolen_key", input=key)
    try:
        stolen = lab.ssh("laptop2", f"ssh -i /tmp/stolen_key -o BatchMode=yes -o StrictHostKeyChecking=no "
                                    f"-o UserKnownHostsFile=/dev/null {lab.ip('laptop1')} true", check=False)
        assert stolen.returncode == 255 and "Permission denied" in stolen.stderr
    finally:
        lab.ssh("laptop2", "rm -f /tmp/stolen_key")


def test_clients_rotate_logs_with_dates(lab: Lab, provisioned) -> None:
    for client in CLIENTS:
        lab.ssh(client, "logrotate -d /etc/logrotate.conf")
        conf = lab.ssh(client, "cat /etc/logrotate.conf").stdout
        assert re.search(r"^dateext$", conf, re.M), client
    lab.ssh("laptop1", "mkdir -p /tmp/lr && echo line > /tmp/lr/app.log && "
                       "printf 'include /etc/logrotate.conf\\n/tmp/lr/app.log {\\n  rotate 2\\n}\\n' > /tmp/lr/conf && "
                       "logrotate -f -s /tmp/lr/state /tmp/lr/conf 2>/dev/null; true")
    assert re.search(r"app\.log-\d{8}", lab.ssh("laptop1", "ls /tmp/lr").stdout)


def test_updatedb_skips_the_backup_paths(lab: Lab, provisioned) -> None:
    conf = lab.ssh("laptop1", "cat /etc/updatedb.conf").stdout
    assert re.search(r'^PRUNEPATHS=".*\s/backup(\s|")', conf, re.M), conf
    lab.ssh("laptop1", "mkdir -p /backup/dervish/x /srv/dervish-control && touch /backup/dervish/x/needle "
                       "/srv/dervish-control/needle")
    try:
        lab.ssh("laptop1", "updatedb", timeout=300)
        found = lab.ssh("laptop1", "plocate needle", check=False).stdout
        assert "/srv/dervish-control/needle" in found and "/backup/" not in found
    finally:
        lab.ssh("laptop1", "rm -rf /backup /srv/dervish-control")


def test_nightly_run_backs_up_every_vault_and_unmounts_the_drive(lab: Lab, provisioned) -> None:
    run = lab.ssh(lab.server, "/usr/local/sbin/dervish-backup", check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode != 0, "drive left mounted"
    drivelog = lab.ssh(lab.server, "cat /var/log/backup_drivelog").stdout.splitlines()
    assert drivelog[-2].startswith("lab-drive-1 ") and drivelog[-1].endswith("finished: ok")
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        for vault in VAULTS:
            summaries = lab.ssh(lab.server, f"cat /backup/dervish/{vault}/*/summary").stdout
            assert "Status: success" in summaries, vault
        assert lab.ssh(lab.server, "stat -c %a /backup/dervish").stdout.strip() == "700"
    finally:
        lab.ssh(lab.server, "umount /backup")


def test_nightly_run_without_the_drive_fails_loudly_and_writes_nothing(lab: Lab, provisioned) -> None:
    with lab.drive_absent():
        run = lab.ssh(lab.server, "/usr/local/sbin/dervish-backup", check=False)
        assert run.returncode == 2
        assert "backup drive LABEL=BACKUPDRIVE not found" in run.stdout + run.stderr
        assert lab.ssh(lab.server, "ls -A /backup").stdout == ""
        assert "NO-DRIVE" in lab.ssh(lab.server, "tail -1 /var/log/backup_drivelog").stdout


def test_reconfiguration_changes_only_what_changed(lab: Lab, provisioned, tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path)
    host_vars = inventory / "host_vars"
    host_vars.mkdir(exist_ok=True)
    group_vars = inventory / "group_vars"

    def write(path: Path, data: dict) -> None:
        path.write_text(yaml.safe_dump(data))

    # add a vault to laptop2
    laptop2 = yaml.safe_load((host_vars / "laptop2.yml").read_text())
    write(host_vars / "laptop2.yml", {**laptop2, "backup_client_vaults": [
        *laptop2["backup_client_vaults"], {"name": "laptop2-home", "tree": "/home"}]})
    run = run_playbook(lab, "site.yml", inventory=inventory)
    assert run.rc == 0, run.stdout[-4000:]
    assert run.changed_hosts == {"backup", "laptop2"}, run.changed
    assert lab.ssh(lab.server, "test -f /etc/dervish/vaults/laptop2-home.conf").returncode == 0
    assert "tree /home" in lab.ssh("laptop2", "cat /etc/dervish/gate.conf").stdout

    # change an expire rule: only the server's master configuration changes
    servers = yaml.safe_load((group_vars / "backup_servers.yml").read_text())
    write(group_vars / "backup_servers.yml", {**servers, "backup_server_expire_rules": ["* * * * 1 +3 months"]})
    run = run_playbook(lab, "site.yml", inventory=inventory)
    assert run.rc == 0, run.stdout[-4000:]
    assert run.changed_hosts == {"backup"}, run.changed
    assert "+3 months" in lab.ssh(lab.server, "cat /etc/dervish/master.conf").stdout

    # remove laptop2's /home vault again: its configuration goes, its images stay
    lab.ssh(lab.server, "/usr/local/sbin/dervish-backup laptop2-home", timeout=600)
    write(host_vars / "laptop2.yml", laptop2)
    run = run_playbook(lab, "site.yml", inventory=inventory)
    assert run.rc == 0, run.stdout[-4000:]
    assert lab.ssh(lab.server, "test -e /etc/dervish/vaults/laptop2-home.conf", check=False).returncode == 1
    assert "laptop2-home" not in lab.ssh(lab.server, "cat /etc/dervish/master.conf").stdout
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        assert "Status: success" in lab.ssh(lab.server, "cat /backup/dervish/laptop2-home/*/summary").stdout
    finally:
        lab.ssh(lab.server, "umount /backup")


def test_adding_a_client(lab: Lab, provisioned, tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    del hosts["backup_clients"]["hosts"]["firewall"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    without = run_playbook(lab, "site.yml", inventory=inventory)
    assert without.rc == 0, without.stdout[-4000:]
    assert "firewall-etc" not in lab.ssh(lab.server, "cat /etc/dervish/master.conf").stdout
    back = run_playbook(lab, "site.yml")
    assert back.rc == 0, back.stdout[-4000:]
    assert back.changed_hosts == {"backup"}, back.changed
    assert "firewall-etc" in lab.ssh(lab.server, "cat /etc/dervish/master.conf").stdout


def test_a_wrong_inventory_fails_before_any_host_changes(lab: Lab, provisioned, tmp_path: Path) -> None:
    inventory = lab_inventory(tmp_path)
    (inventory / "host_vars").mkdir(exist_ok=True)
    (inventory / "host_vars" / "laptop1.yml").write_text(yaml.safe_dump(
        {"backup_client_vaults": [{"name": "dup", "tree": "/"}, {"name": "dup", "tree": "/home", "exclude": []}]}))
    (inventory / "host_vars" / "laptop2.yml").write_text(yaml.safe_dump({"backup_client_server": "nas"}))
    run = run_playbook(lab, "site.yml", inventory=inventory)
    assert run.rc != 0
    assert run.changed_hosts == set(), run.changed
    assert "laptop2: backup_client_server is 'nas'" in run.stdout
    assert "laptop1: backup_client_vaults.exclude" in run.stdout or "exclude" in run.stdout
