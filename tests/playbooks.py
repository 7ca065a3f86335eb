"""Run the collection's playbooks against a lab through ansible-runner, and read the results."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from lab import REPO_ROOT, Lab


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    changed: dict[str, list[str]] = field(default_factory=dict)  # host -> names of changed tasks
    changed_hosts: set[str] = field(default_factory=set)  # from the play recap
    failed: dict[str, list[str]] = field(default_factory=dict)   # host -> failure messages
    results: list[dict] = field(default_factory=list)  # every ok task result, in order (benchmarks read figures)

    @property
    def changed_count(self) -> int:
        return sum(len(tasks) for tasks in self.changed.values())

    def changed_tasks(self) -> set[str]:
        return {task for tasks in self.changed.values() for task in tasks}


def lab_inventory(tmp_path: Path) -> Path:
    """A private copy of inventory/lab, for tests that change host or group variables."""
    target = tmp_path / "inventory"
    shutil.copytree(REPO_ROOT / "inventory" / "lab", target)
    return target


def run_playbook(lab: Lab, playbook: str, inventory: Path | None = None, extravars: dict | None = None,
                 check: bool = False, limit: str | None = None, tags: str | None = None) -> PlaybookRun:
    cmdline = ["--diff"]
    if tags:
        cmdline.append(f"--tags={tags}")
    if check:
        cmdline.append("--check")
    with tempfile.TemporaryDirectory(prefix="dervish-runner-") as private_dir:
        runner = ansible_runner.run(
            private_data_dir=private_dir,
            project_dir=str(REPO_ROOT),
            playbook=str(REPO_ROOT / "playbooks" / playbook),
            inventory=str(inventory or REPO_ROOT / "inventory" / "lab"),
            envvars={
                # the venv's ansible-playbook, also when pytest is started without activating it
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
                "LAB_DIR": str(lab.dir),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_NOCOWS": "1",
            },
            extravars=extravars or {},
            cmdline=" ".join(cmdline),
            limit=limit,
            quiet=True,
        )
        stats = runner.stats or {}
        result = PlaybookRun(rc=runner.rc, stdout=runner.stdout.read(),
                             changed_hosts={host for host, count in stats.get("changed", {}).items() if count})
        for event in runner.events:
            data = event.get("event_data", {})
            host, task = data.get("host"), data.get("task")
            if event.get("event") == "runner_on_ok":
                result.results.append(data.get("res", {}))
            if event.get("event") in ("runner_on_ok", "runner_item_on_ok") and data.get("res", {}).get("changed"):
                result.changed.setdefault(host, [])
                if task not in result.changed[host]:
                    result.changed[host].append(task)
            elif event.get("event") == "runner_on_failed" and not data.get("ignore_errors"):
                result.failed.setdefault(host, []).append(str(data.get("res", {}).get("msg", "")))
    return result
