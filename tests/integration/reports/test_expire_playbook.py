"""playbooks/expire.yml in the lab: --check lists what would go and removes nothing; a run removes an expired
image and keeps the newest good image of a vault even when that one has expired too."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
BANK = "/backup/dervish"
TASK = "Remove the expired images"


@pytest.fixture(scope="module")
def aged(drive) -> dict:
    """laptop1-etc: an image from 20 days ago (expired after 15 days) and a new one; firewall-etc: only an image from
    20 days ago, expired but its newest good image. Both made by the engine with an earlier image time."""
    drive.empty_banks()
    then = (datetime.now() - timedelta(days=20)).strftime("%Y-%m-%d 04:00")
    old = f"--image-time '{then}' --expire '+15 days'"  # firewall's own expiry is longer
    drive.run(f"dervish image firewall-etc {old} && dervish image laptop1-etc {old} && dervish image laptop1-etc")
    laptop1, firewall = drive.images("laptop1-etc"), drive.images("firewall-etc")
    assert len(laptop1) == 2 and len(firewall) == 1
    return {"old": laptop1[0], "new": laptop1[1], "only": firewall[0]}


def test_check_lists_and_removes_nothing(aged: dict, drive) -> None:
    run = run_playbook(drive.lab, "expire.yml", check=True)
    assert run.rc == 0, run.stdout[-6000:]
    assert f"would remove laptop1-etc:default:{aged['old']} (expired " in run.stdout
    assert f"kept firewall-etc:default:{aged['only']} (expired, kept: newest good image" in run.stdout
    assert drive.images("laptop1-etc") == [aged["old"], aged["new"]]
    assert drive.images("firewall-etc") == [aged["only"]]
    assert not drive.mounted()


def test_run_removes_expired_never_the_newest_good(aged: dict, drive) -> None:
    run = run_playbook(drive.lab, "expire.yml")
    assert run.rc == 0, run.stdout[-6000:]
    assert run.changed.get("backup") == [TASK], run.changed
    assert f"removed laptop1-etc:default:{aged['old']} (expired " in run.stdout
    assert drive.images("laptop1-etc") == [aged["new"]]
    assert drive.images("firewall-etc") == [aged["only"]]
    kept = f"{BANK}/firewall-etc/{aged['only']}"
    assert drive.run(f"test -f {kept}/tree/hostname && grep -c '^Status: success' {kept}/summary").stdout == "1\n"
    assert not drive.mounted()
    again = run_playbook(drive.lab, "expire.yml")
    assert again.rc == 0 and again.changed_hosts == set(), again.changed
    assert "nothing has expired" in again.stdout or "kept firewall-etc" in again.stdout


def test_absent_drive_fails_and_removes_nothing(aged: dict, drive) -> None:
    nodes = drive.remove()
    try:
        run = run_playbook(drive.lab, "expire.yml")
    finally:
        drive.restore(nodes)
    assert run.rc != 0 and any("absent" in message for message in run.failed.get("backup", [])), run.failed
    assert drive.images("firewall-etc") == [aged["only"]] and not drive.mounted()
