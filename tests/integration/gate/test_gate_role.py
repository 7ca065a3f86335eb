"""The backup_client role's hold on the server's key and the gate (issue 7), with site.yml in the lab:
a stray copy of the key is reported by --check and removed (A), the server's private key mode is
enforced (B), a bad gate.conf is refused by the gate's own parser before it is put in place (C),
and the client's side of a backup runs under nice/ionice (20)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
KEY = "/root/.ssh/dervish_backup_ed25519"
AUTH = "/root/.ssh/authorized_keys"
AUTH2 = "/root/.ssh/authorized_keys2"
GATE_CONF = "/etc/dervish/gate.conf"
SSH = f"ssh -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/.ssh/known_hosts"


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    first = run_playbook(lab, "site.yml")
    assert first.rc == 0, first.stdout[-6000:]
    return first


def key_lines(lab: Lab, host: str, path: str, body: str) -> list:
    text = lab.ssh(host, f"cat {path} 2>/dev/null || true").stdout
    return [line for line in text.splitlines() if body in line.split()]


def test_a_stray_unrestricted_copy_of_the_key_is_reported_and_removed(lab: Lab, provisioned) -> None:
    public = lab.ssh(lab.server, f"cat {KEY}.pub").stdout.strip()
    body = public.split()[1]
    (managed,) = key_lines(lab, "laptop1", AUTH, body)
    assert managed.startswith('from="') and ',restrict,command="/usr/local/sbin/dervish-gate" ' in managed
    # a copy without options above the managed line, and one in authorized_keys2 on laptop2
    lab.ssh("laptop1", f"sed -i '1i {public}' {AUTH}")
    lab.ssh("laptop2", f"cp -p {AUTH2} {AUTH2}.gate-test 2>/dev/null; echo '{public}' >> {AUTH2}")
    try:
        shell = lab.ssh(lab.server, f"{SSH} laptop1 id", check=False)
        assert "uid=0" in shell.stdout  # the hole: a root shell with the backup key
        check = run_playbook(lab, "site.yml", check=True)
        assert check.rc == 0, check.stdout[-4000:]
        assert "Authorise the key for the gate only, from the server's address only" in check.changed["laptop1"]
        assert "Authorise the key for the gate only, from the server's address only" in check.changed["laptop2"]
        assert f"-{public}" in check.stdout  # the diff shows the stray line going
        assert len(key_lines(lab, "laptop1", AUTH, body)) == 2  # --check changed nothing
        run = run_playbook(lab, "site.yml")
        assert run.rc == 0, run.stdout[-4000:]
        assert key_lines(lab, "laptop1", AUTH, body) == [managed]
        assert key_lines(lab, "laptop2", AUTH2, body) == []
        refused = lab.ssh(lab.server, f"{SSH} laptop1 id", check=False)
        assert refused.returncode == 1 and "uid=" not in refused.stdout
        assert "dervish-gate: refused: command 'id' is not allowed" in refused.stderr
    finally:
        lab.ssh("laptop2", f"sed -i '/{body.replace('/', '.')}/d' {AUTH2}", check=False)


def test_a_world_readable_private_key_is_reported_and_repaired(lab: Lab, provisioned) -> None:
    lab.ssh(lab.server, f"chmod 644 {KEY} && chown nobody {KEY}")
    check = run_playbook(lab, "site.yml", check=True, limit="backup_servers")
    assert check.rc == 0, check.stdout[-4000:]
    assert check.changed_hosts == {"backup"}, check.changed
    assert lab.ssh(lab.server, f"stat -c '%a %U' {KEY}").stdout.split() == ["644", "nobody"]
    run = run_playbook(lab, "site.yml", limit="backup_servers")
    assert run.rc == 0, run.stdout[-4000:]
    assert lab.ssh(lab.server, f"stat -c '%a %U %G' {KEY} {KEY}.pub").stdout.split() == [
        "600", "root", "root", "644", "root", "root"]
    pull = lab.ssh(lab.server, f"rsync -a -e '{SSH}' laptop1:/etc/hostname /tmp/gate-role-h && cat /tmp/gate-role-h",
                   check=False)
    assert pull.returncode == 0 and pull.stdout.strip() == "laptop1", pull.stderr


@pytest.mark.parametrize(("commands", "message"), [
    ({"rsync": "/usr/bin/rsync"}, "command name 'rsync' is reserved"),
    ({"db-dump": "usr/local/sbin/db-dump"}, "program 'usr/local/sbin/db-dump' is not absolute"),
])
def test_a_bad_gate_config_is_refused_before_it_is_put_in_place(lab: Lab, provisioned, tmp_path: Path,
                                                                commands: dict, message: str) -> None:
    before = lab.ssh("laptop2", f"cat {GATE_CONF}").stdout
    inventory = lab_inventory(tmp_path)
    host_vars = inventory / "host_vars" / "laptop2.yml"
    data = yaml.safe_load(host_vars.read_text())
    data["backup_client_gate_commands"] = commands
    host_vars.write_text(yaml.safe_dump(data))
    run = run_playbook(lab, "site.yml", inventory=inventory, limit="laptop2")
    assert run.rc != 0
    assert any(message in failure for failure in run.failed.get("laptop2", [])) or message in run.stdout, \
        run.stdout[-4000:]
    assert lab.ssh("laptop2", f"cat {GATE_CONF}").stdout == before


def test_the_clients_rsync_runs_under_nice_and_ionice(lab: Lab, provisioned) -> None:
    conf = lab.ssh("laptop1", f"cat {GATE_CONF}").stdout
    assert "\nnice 10\n" in conf and "\nionice best-effort 7\n" in conf, conf
    lab.ssh("laptop1", "mkdir -p /home/gate-nice && head -c 3000000 /dev/urandom > /home/gate-nice/blob")
    puller = 0
    try:
        pull = lab.ssh(lab.server, f"rm -rf /tmp/gate-nice; setsid rsync -a --bwlimit=300 -e '{SSH}' "
                                   "laptop1:/home/gate-nice/ /tmp/gate-nice/ >/dev/null 2>&1 < /dev/null & echo $!")
        puller = int(pull.stdout.strip())
        seen = ""
        for _attempt in range(50):
            seen = lab.ssh("laptop1", "for p in $(pgrep -x rsync); do "
                                      "echo $(ps -o ni= -p $p) $(ionice -p $p); done", check=False).stdout
            if seen.strip():
                break
            time.sleep(0.2)
        assert seen.split()[:3] == ["10", "best-effort:", "prio"], seen
        assert seen.split()[3] == "7", seen
    finally:
        if puller:
            lab.ssh(lab.server, f"kill {puller}", check=False)
        lab.ssh(lab.server, "rm -rf /tmp/gate-nice", check=False)
        lab.ssh("laptop1", "rm -rf /home/gate-nice", check=False)
