"""playbooks/status.yml in the lab: healthy after a real nightly backup; stale when a vault's last good image is
old (its summaries' times moved back three days, as an old image's would be) - fails naming that vault only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from lab import Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
BANK = "/backup/dervish"
VAULTS = {"laptop1-etc": "laptop1", "laptop1-home": "laptop1", "laptop2-etc": "laptop2", "firewall-etc": "firewall"}


@pytest.fixture(scope="module")
def backed_up(drive) -> Lab:
    drive.empty_banks()
    nightly = drive.lab.ssh(drive.lab.server, "/usr/local/sbin/dervish-backup", check=False)
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr
    return drive.lab


def test_healthy_after_a_backup(backed_up: Lab, drive, tmp_path) -> None:
    report = tmp_path / "status.json"
    run = run_playbook(backed_up, "status.yml", extravars={"dervish_status_json": str(report)})
    assert run.rc == 0, run.stdout[-6000:]
    assert run.changed_hosts == set(), run.changed  # a report: the drive is mounted for it and released
    assert not drive.mounted()
    doc = json.loads(report.read_text())
    assert doc["stale"] == [] and doc["max_age_hours"] == 48.0
    assert doc["servers"]["backup"]["error"] is None
    rows = {row["vault"]: row for row in doc["vaults"]}
    assert set(rows) == set(VAULTS)
    for vault, host in VAULTS.items():
        row = rows[vault]
        assert (row["server"], row["host"], row["disklabel"]) == ("backup", host, "lab-drive-1"), row
        assert row["last_good"] == row["last_attempt"] and row["last_attempt_status"] == "success", row
        assert (row["images"], row["good_images"], row["stale"]) == (1, 1, False), row
        assert 0 <= row["age_seconds"] < 3600 and row["last_good_bytes"] is not None
        assert row["path"] == f"{BANK}/{vault}"
        assert row["metadata"] in (True, False)
        assert row["last_attempt_begin"] and row["last_good_complete"]
    table = next(line for line in run.stdout.splitlines() if "HOST" in line and "DRIVE" in line)
    assert "LAST GOOD" in table and "laptop2-etc" in run.stdout


def test_stale_vault_fails_the_run_and_is_named(backed_up: Lab, drive, tmp_path) -> None:
    old = (datetime.now() - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    drive.run(f"sed -i -E 's/^(Image-now|Backup-begin|Backup-complete): .*/\\1: {old}/' "
              f"{BANK}/laptop2-etc/*/summary")
    report = tmp_path / "status.json"
    run = run_playbook(backed_up, "status.yml", extravars={"dervish_status_json": str(report)})
    assert run.rc != 0
    messages = " ".join(run.failed.get("backup", []))
    assert "stale backups" in messages and "laptop2-etc (last good image 3d00h old)" in messages, run.failed
    assert not any(vault in messages for vault in VAULTS if vault != "laptop2-etc")
    assert not drive.mounted()
    doc = json.loads(report.read_text())  # written before the run fails, for monitoring
    assert doc["stale"] == ["laptop2-etc"]
    rows = {row["vault"]: row for row in doc["vaults"]}
    assert rows["laptop2-etc"]["stale"] is True and rows["laptop2-etc"]["age_seconds"] >= 3 * 86400
    assert rows["laptop1-etc"]["stale"] is False
    # a larger limit is a variable: the same bank is healthy with 4 days
    lenient = run_playbook(backed_up, "status.yml", extravars={"dervish_status_json": str(report),
                                                               "dervish_status_max_age_hours": 96})
    assert lenient.rc == 0, lenient.stdout[-4000:]
    assert json.loads(report.read_text())["stale"] == []


def test_absent_drive_fails_and_is_reported(backed_up: Lab, drive, tmp_path) -> None:
    report = tmp_path / "status.json"
    nodes = drive.remove()
    try:
        run = run_playbook(backed_up, "status.yml", extravars={"dervish_status_json": str(report)})
    finally:
        drive.restore(nodes)
    assert run.rc != 0
    assert any("absent" in message for message in run.failed.get("backup", [])), run.failed
    doc = json.loads(report.read_text())  # monitoring still gets a report naming the server's error
    assert "is absent" in doc["servers"]["backup"]["error"] and doc["vaults"] == [], doc
    assert not drive.mounted()
