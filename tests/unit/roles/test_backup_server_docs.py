"""The backup_server role's documentation agrees with what it ships (issue 7, item 21)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
WRAPPER = REPO / "roles" / "backup_server" / "templates" / "usr" / "local" / "sbin" / "dervish-backup.j2"


def _script_exit_codes() -> set[int]:
    header = WRAPPER.read_text().split("# exit codes:", 1)[1].split("\nset ", 1)[0]
    return {int(code) for code in re.findall(r"^#(?: exit codes:)?\s+(\d+) ", "# exit codes:" + header, re.M)}


def _readme_exit_codes() -> set[int]:
    text = (REPO / "README.md").read_text()
    section = text.split("`dervish-backup` mounts the drive", 1)[1].split("\n\n", 1)[0]
    listed = " ".join(section.split("Exit codes:", 1)[1].split(". cron", 1)[0].split())
    return {int(code) for code in re.findall(r"(?:^|, )(\d+) [a-z]", listed)}


def test_readme_lists_the_wrappers_exit_codes() -> None:
    assert _script_exit_codes() == {0, 1, 2, 3, 4, 64}
    assert _readme_exit_codes() == _script_exit_codes()


def test_cron_and_logrotate_are_installed_not_assumed() -> None:
    packages = yaml.safe_load((REPO / "roles" / "backup_server" / "vars" / "main.yml").read_text())
    assert {"cron", "logrotate"} <= set(packages["__backup_server_packages"])
