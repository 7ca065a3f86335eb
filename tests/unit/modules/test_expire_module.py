"""Module dervish.backup.expire on real bank directories: check mode lists, a run removes, the newest good stays."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import expire as mod

SUMMARY = ("client: c\nvault: {vault}\nbranch: default\nImage: {name}\nImage-now: {when}\n"
           "Expire: +15 days == {expire}\nBackup-begin: {when}\nBackup-complete: {when}\nStatus: {status}\n")


def image(bank, vault, name, days_ago, status="success"):
    when = datetime.now() - timedelta(days=days_ago)
    path = bank / vault / name
    (path / "tree").mkdir(parents=True)
    (path / "tree" / "f").write_text(name)
    (path / "summary").write_text(SUMMARY.format(
        vault=vault, name=name, when=when.strftime("%Y-%m-%d %H:%M:%S"), status=status,
        expire=(when + timedelta(days=15)).strftime("%Y-%m-%d %H:%M:%S")))
    return path


@pytest.fixture
def bank(tmp_path):
    bank = tmp_path / "bank"
    for vault in ("v", "w"):
        (bank / vault / "dirvish").mkdir(parents=True)
    image(bank, "v", "old", 30)
    image(bank, "v", "older-failed", 40, status="error (23) -- partial transfer")
    image(bank, "v", "new", 1)
    image(bank, "w", "only", 20)  # expired, but the newest good image of w
    (tmp_path / "master.conf").write_text(f"bank:\n\t{bank}\n")
    return bank


def run_module(capsys, tmp_path, check=False, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=True, config=str(tmp_path / "master.conf"))
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_lists_and_removes_nothing(capsys, tmp_path, bank):
    result = run_module(capsys, tmp_path, check=True)
    assert result["changed"] is True and not result.get("failed")
    assert [(r["vault"], r["image"]) for r in result["removed"]] == [("v", "older-failed"), ("v", "old")]
    assert result["removed"][1]["reason"].startswith("expired ")
    assert [(r["vault"], r["image"]) for r in result["kept_newest"]] == [("w", "only")]
    assert result["diff"]["before"] == "v:default:older-failed\nv:default:old\n" and result["diff"]["after"] == ""
    assert sorted(p.name for p in (bank / "v").iterdir()) == ["dirvish", "new", "old", "older-failed"]


def test_run_removes_expired_keeps_newest_good_then_changes_nothing(capsys, tmp_path, bank):
    result = run_module(capsys, tmp_path)
    assert result["changed"] is True and not result.get("failed")
    assert [r["image"] for r in result["removed"]] == ["older-failed", "old"]
    assert sorted(p.name for p in (bank / "v").iterdir()) == ["dirvish", "new"]
    assert (bank / "w" / "only" / "tree" / "f").read_text() == "only"
    again = run_module(capsys, tmp_path)
    assert again["changed"] is False and again["removed"] == [] and "diff" not in again
    assert [r["image"] for r in again["kept_newest"]] == ["only"]


def test_one_vault_and_a_misspelt_one(capsys, tmp_path, bank):
    result = run_module(capsys, tmp_path, vault="w")
    assert result["changed"] is False and result["removed"] == []
    result = run_module(capsys, tmp_path, vault="nosuch")
    assert result["failed"] is True and "nosuch" in result["msg"]
    assert (bank / "v" / "old").is_dir()


def test_missing_bank_removes_nothing(capsys, tmp_path, bank):
    (tmp_path / "master.conf").write_text(f"bank:\n\t{bank}\n\t{tmp_path / 'unmounted'}\n")
    result = run_module(capsys, tmp_path)
    assert result["failed"] is True and "is the backup drive mounted?" in result["msg"]
    assert (bank / "v" / "old").is_dir()


def test_unreadable_expire_is_kept_and_fails_the_task(capsys, tmp_path, bank):
    summary = bank / "v" / "old" / "summary"
    summary.write_text(re.sub(r"^Expire: .*$", "Expire: soonish", summary.read_text(), flags=re.M))
    result = run_module(capsys, tmp_path)
    assert result["failed"] is True and "cannot be parsed" in result["msg"]
    assert [r["image"] for r in result["removed"]] == ["older-failed"] and (bank / "v" / "old").is_dir()


def test_messages_read_like_dervish_expire(capsys, tmp_path, bank):
    would = run_module(capsys, tmp_path, check=True)["messages"]
    assert would[0].startswith("would remove v:default:older-failed (failed image, expired ")
    assert would[-1] == "kept w:default:only (expired, kept: newest good image of w:default)"
    assert run_module(capsys, tmp_path)["messages"][1].startswith("removed v:default:old (expired ")
