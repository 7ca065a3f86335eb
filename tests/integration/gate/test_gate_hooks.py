"""Client hooks through the gate (issue 7, item 17), in the lab: a vault's pre_client/post_client
programs (a database dump before the backup) are allowlisted in the client's gate.conf by site.yml
and run by the server's engine as the bare gate commands dervish-pre-client-<vault> / -post-."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
VAULT = "laptop1-home"
DUMP = "/usr/local/sbin/gate-test-db-dump"
POST = "/usr/local/sbin/gate-test-post"
GATE_LOG = "/var/log/dervish-gate.log"


def with_hooks(tmp_path: Path, pre: str) -> Path:
    inventory = lab_inventory(tmp_path)
    host_vars = inventory / "host_vars" / "laptop1.yml"
    data = yaml.safe_load(host_vars.read_text())
    for vault in data["backup_client_vaults"]:
        if vault["name"] == VAULT:
            vault.update(pre_client=pre, post_client=POST)
    host_vars.write_text(yaml.safe_dump(data))
    return inventory


def newest_image_file(lab: Lab, relative: str) -> str:
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        image = lab.ssh(lab.server, f"ls -1d /backup/dervish/{VAULT}/20* | tail -1").stdout.strip()
        summary = lab.ssh(lab.server, f"cat {image}/summary").stdout
        log = lab.ssh(lab.server, f"zcat -f {image}/log*").stdout
        data = lab.ssh(lab.server, f"cat {image}/tree/{relative}", check=False).stdout
        return summary + "\n--log--\n" + log + "\n--file--\n" + data
    finally:
        lab.ssh(lab.server, "umount /backup")


@pytest.fixture
def hook_programs(lab: Lab):
    lab.ssh("laptop1", f"install -m 755 /dev/stdin {DUMP}",
            input="#!/bin/sh\nmkdir -p /home/gate-hook && echo \"dump of $(hostname)\" > /home/gate-hook/db.sql\n")
    lab.ssh("laptop1", f"install -m 755 /dev/stdin {POST}", input="#!/bin/sh\ntouch /tmp/gate-test-post-ran\n")
    lab.ssh("laptop1", "rm -f /tmp/gate-test-post-ran /home/gate-hook/db.sql")
    yield
    lab.ssh("laptop1", f"rm -rf {DUMP} {POST} /home/gate-hook /tmp/gate-test-post-ran", check=False)


def test_a_pre_client_dump_runs_through_the_gate_before_the_backup(lab: Lab, hook_programs, tmp_path: Path) -> None:
    inventory = with_hooks(tmp_path, DUMP)
    try:
        site = run_playbook(lab, "site.yml", inventory=inventory)
        assert site.rc == 0, site.stdout[-6000:]
        conf = lab.ssh("laptop1", "cat /etc/dervish/gate.conf").stdout
        assert f"\ncommand dervish-pre-client-{VAULT} {DUMP}\n" in conf
        vault_conf = lab.ssh(lab.server, f"cat /etc/dervish/vaults/{VAULT}.conf").stdout
        assert f"\npre-client: gate:dervish-pre-client-{VAULT}\n" in vault_conf
        backup = run_playbook(lab, "backup.yml", inventory=inventory, extravars={"dervish_backup_vaults": [VAULT]})
        assert backup.rc == 0, backup.stdout[-6000:]
        image = newest_image_file(lab, "gate-hook/db.sql")
        assert "Status: success" in image, image
        assert f"Pre-Client: gate:dervish-pre-client-{VAULT}" in image
        assert image.endswith("--file--\ndump of laptop1\n"), image  # the dump made before rsync is in the image
        assert lab.ssh("laptop1", "test -e /tmp/gate-test-post-ran", check=False).returncode == 0
        log = lab.ssh("laptop1", f"cat {GATE_LOG}").stdout
        assert f'ALLOW client={lab.ip(lab.server)} reason="command dervish-pre-client-{VAULT}" exit=0' in log
        assert f'reason="command dervish-post-client-{VAULT}" exit=0' in log
    finally:
        run_playbook(lab, "site.yml")


def test_a_failing_pre_client_hook_fails_the_vault(lab: Lab, hook_programs, tmp_path: Path) -> None:
    lab.ssh("laptop1", "install -m 755 /dev/stdin /usr/local/sbin/gate-test-fail",
            input="#!/bin/sh\necho 'database is down' >&2\nexit 4\n")
    inventory = with_hooks(tmp_path, "/usr/local/sbin/gate-test-fail")
    try:
        site = run_playbook(lab, "site.yml", inventory=inventory)
        assert site.rc == 0, site.stdout[-6000:]
        backup = run_playbook(lab, "backup.yml", inventory=inventory, extravars={"dervish_backup_vaults": [VAULT]})
        assert backup.rc != 0
        image = newest_image_file(lab, "gate-hook/db.sql")
        assert "pre-client failed (4)" in image, image
        log = lab.ssh("laptop1", f"cat {GATE_LOG}").stdout
        reason = f"command dervish-pre-client-{VAULT}: database is down"
        assert f'FAIL client={lab.ip(lab.server)} reason="{reason}" exit=4' in log
    finally:
        lab.ssh("laptop1", "rm -f /usr/local/sbin/gate-test-fail", check=False)
        run_playbook(lab, "site.yml")
