"""The roles with the oldest ansible-core the collection supports (meta/runtime.yml's requires_ansible).

`make oldest-core` runs this with DERVISH_TEST_CORE_VENV set to a venv holding that ansible-core and a lab
of its own (DERVISH_TEST_LAB_DIR / DERVISH_TEST_LAB_NET); its ansible-playbook runs site.yml against the
lab: it converges, a second run changes nothing, and no run warns that the core is unsupported.
(Check mode is left to tests/integration/site with the newest core: CI time.)
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import REPO_ROOT, Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]
VENV = Path(os.environ.get("DERVISH_TEST_CORE_VENV", REPO_ROOT / ".venv-core216"))
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=\d+\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)


def oldest_supported() -> str:
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    return re.fullmatch(r">=\s*(\d+\.\d+)(\.0)?", runtime["requires_ansible"]).group(1)


def ansible_playbook(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(VENV / "bin" / "ansible-playbook"), "-i", str(REPO_ROOT / "inventory" / "lab"),
                           *args], env=env, cwd=REPO_ROOT, text=True, capture_output=True, timeout=900, check=False)


def changed_hosts(run: subprocess.CompletedProcess[str]) -> set[str]:
    recap = [match.groupdict() for match in RECAP.finditer(run.stdout)]
    assert recap, run.stdout[-4000:]
    assert all(line["failed"] == "0" and line["unreachable"] == "0" for line in recap), run.stdout[-4000:]
    return {line["host"] for line in recap if line["changed"] != "0"}


def test_the_venv_holds_the_oldest_supported_core() -> None:
    assert (VENV / "bin" / "ansible-playbook").exists(), f"{VENV}: no such venv (make oldest-core creates it)"
    version = subprocess.run([str(VENV / "bin" / "ansible-playbook"), "--version"], text=True,
                             capture_output=True, check=True).stdout
    assert re.search(rf"\[core {re.escape(oldest_supported())}\.\d+\]", version), version


def test_site_converges_then_changes_nothing(lab: Lab) -> None:
    first = ansible_playbook(lab, "--diff", "playbooks/site.yml")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert "does not support Ansible version" not in first.stderr + first.stdout
    assert changed_hosts(first) <= {"backup", "laptop1", "laptop2", "firewall"}
    second = ansible_playbook(lab, "--diff", "playbooks/site.yml")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-2000:]
    assert changed_hosts(second) == set(), second.stdout[-6000:]
