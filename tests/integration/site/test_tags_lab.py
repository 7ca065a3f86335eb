"""A run limited with --tags runs the tasks inside the tagged part (include_tasks' `apply: tags`) and no other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import REPO_ROOT, Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_a_part_tag_runs_exactly_that_part(lab: Lab) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible-playbook", "-i", str(REPO_ROOT / "inventory" / "lab"),
                             "--tags", "backup_client_install_gate", str(REPO_ROOT / "playbooks" / "site.yml")],
                            env=env, cwd=REPO_ROOT, text=True, capture_output=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    tasks = [line for line in result.stdout.splitlines() if line.startswith("TASK [")]
    assert "TASK [dervish.backup.backup_client : Install the gate program]" in "\n".join(tasks)
    assert "TASK [Check every host's backup variables and the site as a whole]" in "\n".join(tasks)
    role_tasks = {line.split(" : ", 1)[1].rstrip("] *") for line in tasks if " : " in line}
    assert role_tasks == {
        "Validating arguments against arg spec 'main' - Make a host the dervish backup server for its clients",
        "Validating arguments against arg spec 'main' - Make a host a dervish backup client",
        "Install the forced-command gate",
        "Create /etc/dervish", "Install the gate program",
        "Write the gate's configuration (the trees the server may read)",
    }, tasks
