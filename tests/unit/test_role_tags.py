"""Every role entry point carries tags, so `--tags` selects parts of a role and `--list-tasks` shows them.

The rule: each task of a role's tasks/main.yml is tagged `<role>` and `<role>_<part>`, where `<part>` is
the stem of the task file it includes (`apply: tags` hands the same tags to the included tasks, which
an `include_tasks` does not do by itself). ansible-playbook --list-tasks/--list-tags checks the result
without connecting to any host.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = ("backup_server", "backup_client")
INCLUDE = "ansible.builtin.include_tasks"


def main_tasks(role: str) -> list[dict]:
    return yaml.safe_load((REPO_ROOT / "roles" / role / "tasks" / "main.yml").read_text())


def list_site(*args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible-playbook", "-i", str(REPO_ROOT / "inventory" / "lab"), *args,
                             str(REPO_ROOT / "playbooks" / "site.yml")],
                            env=env, cwd=REPO_ROOT, text=True, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def listed_tasks(output: str) -> list[str]:
    return [line.split("\tTAGS:")[0].strip() for line in output.splitlines() if "\tTAGS:" in line
            and not line.lstrip().startswith("play #")]


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_is_tagged_for_its_role_and_part(role: str) -> None:
    for task in main_tasks(role):
        include = task.get(INCLUDE)
        part = Path(include if isinstance(include, str) else include["file"]).stem if include else None
        expected = {role, f"{role}_{part}"} if part else {role}
        tags = set(task.get("tags", []))
        assert role in tags and (part is None or tags == expected), f"{role}: {task['name']}: tags {sorted(tags)}"
        if include:
            apply = include.get("apply", {}) if isinstance(include, dict) else {}
            assert set(apply.get("tags", [])) == tags, f"{role}: {task['name']}: apply tags {apply.get('tags')}"


@pytest.mark.parametrize("role", ROLES)
def test_every_included_task_file_is_reached_from_main(role: str) -> None:
    included = {task[INCLUDE] if isinstance(task[INCLUDE], str) else task[INCLUDE]["file"]
                for task in main_tasks(role) if INCLUDE in task}
    files = {path.name for path in (REPO_ROOT / "roles" / role / "tasks").glob("*.yml")} - {"main.yml"}
    assert included == files


def test_list_tags_shows_each_role_and_part() -> None:
    output = list_site("--list-tags")
    tags = set()
    for found in re.findall(r"TASK TAGS: \[([^\]]*)\]", output):
        tags |= {tag.strip() for tag in found.split(",") if tag.strip()}
    for role in ROLES:
        for task in main_tasks(role):
            assert set(task["tags"]) <= tags


def test_a_part_tag_lists_only_that_part_and_the_checks() -> None:
    tasks = listed_tasks(list_site("--list-tasks", "--tags", "backup_server_write_configuration"))
    assert tasks == [
        "Check every host's backup variables and the site as a whole",
        "dervish.backup.backup_server : Validating arguments against arg spec 'main' - "
        "Make a host the dervish backup server for its clients",
        "dervish.backup.backup_server : Write the master and vault configurations",
        "dervish.backup.backup_client : Validating arguments against arg spec 'main' - "
        "Make a host a dervish backup client",
    ]


def test_a_role_tag_lists_the_whole_role_and_nothing_of_the_other() -> None:
    tasks = listed_tasks(list_site("--list-tasks", "--tags", "backup_client"))
    client = [task for task in tasks if task.startswith("dervish.backup.backup_client : ")]
    assert len(client) == 1 + len(main_tasks("backup_client"))  # argument validation + every entry point
    assert not [task for task in tasks if task.startswith("dervish.backup.backup_server : ")
                and "Validating arguments" not in task]


def test_the_site_check_runs_whatever_the_tags() -> None:
    # a wrong inventory must fail before any host is changed, also in a run limited by --tags
    tasks = listed_tasks(list_site("--list-tasks", "--tags", "backup_client_install_gate"))
    assert "Check every host's backup variables and the site as a whole" in tasks


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_every_tag(role: str) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    tags = {tag for task in main_tasks(role) for tag in task.get("tags", [])}
    assert [tag for tag in sorted(tags) if f"`{tag}`" not in readme] == []
