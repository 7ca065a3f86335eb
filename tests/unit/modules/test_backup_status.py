"""Module dervish.backup.backup_status on real bank directories: the engine's status plus staleness and a table."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import backup_status as mod

SUMMARY = ("client: {client}\nvault: {vault}\nbranch: default\nImage: {name}\nImage-now: {begin}\n"
           "Expire: +15 days == 2099-01-01 00:00:00\nBackup-begin: {begin}\n{tail}")


def fmt(when):
    return when.strftime("%Y-%m-%d %H:%M:%S")


def image(bank, vault, name, begin, status="success", client="192.0.2.11"):
    path = bank / vault / name
    (path / "tree").mkdir(parents=True)
    tail = f"Image-bytes: 2048\nBackup-complete: {fmt(begin + timedelta(minutes=3))}\nStatus: {status}\n"
    (path / "summary").write_text(SUMMARY.format(client=client, vault=vault, name=name, begin=fmt(begin), tail=tail))


@pytest.fixture
def site(tmp_path):
    bank = tmp_path / "bank"
    for vault in ("fresh", "old", "never"):
        (bank / vault / "dirvish").mkdir(parents=True)
    now = datetime.now()
    image(bank, "fresh", "a", now - timedelta(hours=5))
    image(bank, "old", "a", now - timedelta(days=3))
    image(bank, "never", "a", now - timedelta(hours=1), status="error (23) -- partial transfer")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    return master


def run_module(capsys, check=False, **args):
    args.update(_ansible_check_mode=check)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def test_old_and_never_good_vaults_are_stale(capsys, site):
    result = run_module(capsys, config=str(site), hosts={"fresh": "laptop1"}, check=True)
    assert not result.get("failed") and result["changed"] is False
    assert result["stale"] == ["never", "old"]
    rows = {row["vault"]: row for row in result["vaults"]}
    assert rows["fresh"]["host"] == "laptop1" and rows["old"]["host"] == "192.0.2.11"
    assert rows["fresh"]["stale"] is False and rows["fresh"]["last_good"] == "a"
    assert rows["fresh"]["age"].startswith("4h") and rows["fresh"]["last_good_bytes"] == 2048
    assert rows["never"]["last_good"] is None and rows["never"]["last_attempt_status"].startswith("error (23)")
    assert rows["never"]["images"] == 1 and rows["never"]["good_images"] == 0
    assert result["table"][0].split()[:3] == ["HOST", "VAULT", "LAST"]
    # per client: sorted by host, then vault
    assert [line.split()[:2] for line in result["table"][1:]] == [
        ["192.0.2.11", "never"], ["192.0.2.11", "old"], ["laptop1", "fresh"]]
    assert [line.split()[-1] for line in result["table"][1:]] == ["yes", "yes", "no"]


def test_limit_is_a_variable(capsys, site):
    assert run_module(capsys, config=str(site), max_age_hours=100)["stale"] == ["never"]
    assert run_module(capsys, config=str(site), max_age_hours=1)["stale"] == ["fresh", "never", "old"]


def test_missing_bank_fails_instead_of_looking_empty(capsys, tmp_path):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{tmp_path / 'unmounted'}\n")
    result = run_module(capsys, config=str(master))
    assert result["failed"] is True and "is the backup drive mounted?" in result["msg"]
    assert result["missing_banks"] == [str(tmp_path / "unmounted")]


def test_bad_input_is_one_message(capsys, tmp_path, site):
    result = run_module(capsys, config=str(tmp_path / "nope.conf"))
    assert result["failed"] is True and result["msg"] == f"master configuration {tmp_path / 'nope.conf'} not found"
    result = run_module(capsys, config=str(site), max_age_hours=-1)
    assert result["failed"] is True and "max_age_hours" in result["msg"]
