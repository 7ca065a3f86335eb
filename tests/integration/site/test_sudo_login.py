"""site.yml through a login that is not root: the playbooks become root with sudo where the roles need it.

Every lab host gets a user with the lab's key and passwordless sudo (what a real site's admin login
looks like); site.yml runs as that user and converges, as root where it matters. It runs on whatever
the lab holds (test_site starts its own hosts afresh, so the two may run in any order).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab import REPO_ROOT, Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ADMIN = "dervish-admin"


@pytest.fixture(scope="module")
def admin_login(lab: Lab) -> str:
    public_key = (lab.dir / "id_lab.pub").read_text()
    for host in lab.hosts:
        lab.ssh(host, f"id {ADMIN} >/dev/null 2>&1 || useradd -m -s /bin/sh {ADMIN}; "
                      f"install -d -m 700 -o {ADMIN} -g {ADMIN} /home/{ADMIN}/.ssh; "
                      f"install -m 600 -o {ADMIN} -g {ADMIN} /dev/stdin /home/{ADMIN}/.ssh/authorized_keys; "
                      f"echo '{ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{ADMIN}; "
                      f"chmod 440 /etc/sudoers.d/{ADMIN}", input=public_key)
    return ADMIN


def test_the_login_is_not_root(lab: Lab, admin_login: str) -> None:
    env = {**os.environ, "PATH": f"{sys.executable.rsplit('/', 1)[0]}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible", "-i", str(REPO_ROOT / "inventory" / "lab"), "all", "-e",
                             f"ansible_user={admin_login}", "-m", "ansible.builtin.command", "-a", "id -un"],
                            env=env, text=True, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(f"\n{admin_login}") == len(lab.hosts), result.stdout


def test_site_converges_through_sudo(lab: Lab, admin_login: str) -> None:
    # one run only (sudo costs time): that a second run changes nothing is test_site's business
    run = run_playbook(lab, "site.yml", extravars={"ansible_user": admin_login})
    assert run.rc == 0, run.stdout[-6000:]
    # what needs root was done as root
    assert lab.ssh(lab.server, "stat -c %U:%a /etc/dervish/master.conf").stdout.split() == ["root:600"]
    for client in ("laptop1", "laptop2", "firewall"):
        assert lab.ssh(client, "stat -c %U:%a /usr/local/sbin/dervish-gate").stdout.split() == ["root:755"]
