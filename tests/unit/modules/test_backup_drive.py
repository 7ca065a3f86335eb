"""Module tests for dervish.backup.backup_drive: its pure logic, and main() against a stand-in wrapper.

The stand-in is a real script in tmp_path that answers `--holds` from a file and records the other
calls; the real wrapper is exercised in tests/integration/site/test_drive_holds.py.
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import backup_drive as mod

HOLDS_UNMOUNTED = """DRIVE=LABEL=BACKUPDRIVE
MOUNT_POINT=/backup
PRESENT=yes
MOUNTED=no
MOUNTED_BY_DERVISH=no
DISKLABEL=
"""
HOLDS_MOUNTED = """DRIVE=LABEL=BACKUPDRIVE
MOUNT_POINT=/backup
PRESENT=yes
MOUNTED=yes
MOUNTED_BY_DERVISH=yes
DISKLABEL=offsite-2
HOLD=ansible-ctl-1 4242 live
HOLD=nightly-77 77 expired
"""


def test_parse_holds() -> None:
    info = mod.parse_holds(HOLDS_MOUNTED)
    assert info["MOUNT_POINT"] == "/backup" and info["DISKLABEL"] == "offsite-2"
    assert info["HOLD"] == [("ansible-ctl-1", "4242", True), ("nightly-77", "77", False)]
    assert mod.live_holders(info) == ["ansible-ctl-1"]
    assert mod.live_holders(info, without="ansible-ctl-1") == []


def test_planned_held_mounts_only_an_unmounted_drive() -> None:
    assert mod.planned(mod.parse_holds(HOLDS_UNMOUNTED), "held", "x") == (True, True)
    assert mod.planned(mod.parse_holds(HOLDS_MOUNTED), "held", "x") == (False, True)
    assert mod.planned(mod.parse_holds("DRIVE=\nMOUNT_POINT=\n"), "held", "x") == (False, False)


def test_planned_release_unmounts_only_when_the_last_live_hold_goes() -> None:
    info = mod.parse_holds(HOLDS_MOUNTED)
    assert mod.planned(info, "released", "ansible-ctl-1") == (True, False)
    assert mod.planned(info, "released", "someone-else") == (False, True)
    by_hand = mod.parse_holds(HOLDS_MOUNTED.replace("MOUNTED_BY_DERVISH=yes", "MOUNTED_BY_DERVISH=no"))
    assert mod.planned(by_hand, "released", "ansible-ctl-1") == (False, True)


def test_last_error_is_the_wrappers_error_line() -> None:
    err = "2026-01-01 04:00:00 hold of x (pid 1) expired\n2026-01-01 04:00:01 ERROR: backup drive LABEL=B not found\n"
    assert mod.last_error(err) == "backup drive LABEL=B not found"
    assert mod.last_error("just this\n") == "just this"
    assert mod.last_error("") == ""


def run(capsys, wrapper, check=False, **args):
    args.update(_ansible_check_mode=check, wrapper=str(wrapper / "dervish-backup"))
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def calls(wrapper) -> list[str]:
    path = wrapper / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_held_mounts_and_returns_the_label(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED)
    (wrapper / "holds-after.txt").write_text(HOLDS_MOUNTED)
    (wrapper / "reply.out").write_text("DISKLABEL=offsite-2\n")
    result = run(capsys, wrapper, holder="ansible-ctl-1", pid=4242)
    assert calls(wrapper) == ["--acquire ansible-ctl-1 --pid 4242"]
    assert result["changed"] is True and result["mounted"] is True
    assert result["label"] == "offsite-2" and result["mount_point"] == "/backup"
    assert result["holds"] == ["ansible-ctl-1"] and result["holder"] == "ansible-ctl-1"


def test_held_on_a_mounted_drive_changes_nothing(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_MOUNTED)
    (wrapper / "reply.out").write_text("DISKLABEL=offsite-2\n")
    result = run(capsys, wrapper, holder="second")
    assert calls(wrapper) == ["--acquire second"]
    assert result["changed"] is False and result["mounted"] is True


def test_check_mode_reports_and_calls_nothing(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED)
    result = run(capsys, wrapper, check=True, holder="x")
    assert result["changed"] is True and result["mounted"] is True and result["label"] is None
    (wrapper / "holds.txt").write_text(HOLDS_MOUNTED)
    result = run(capsys, wrapper, check=True, holder="ansible-ctl-1", state="released")
    assert result["changed"] is True and result["mounted"] is False
    assert calls(wrapper) == []


def test_check_mode_fails_on_an_absent_drive(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED.replace("PRESENT=yes", "PRESENT=no"))
    result = run(capsys, wrapper, check=True, holder="x")
    assert result["failed"] is True and "backup drive LABEL=BACKUPDRIVE is not present" in result["msg"]
    assert calls(wrapper) == []


def test_absent_drive_exit_2_says_so(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED.replace("PRESENT=yes", "PRESENT=no"))
    (wrapper / "reply.rc").write_text("2")
    (wrapper / "reply.err").write_text("2026-01-01 04:00:00 ERROR: backup drive LABEL=BACKUPDRIVE not found\n")
    result = run(capsys, wrapper, holder="x")
    assert result["failed"] is True and result["rc"] == 2
    assert result["msg"].startswith("backup drive LABEL=BACKUPDRIVE is absent: nothing was mounted or written")


def test_unusable_bank_exit_2_names_the_cause(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED)
    (wrapper / "reply.rc").write_text("2")
    (wrapper / "reply.err").write_text("x ERROR: bank /backup/dervish is not writable (read-only?)\n")
    result = run(capsys, wrapper, holder="x")
    assert result["failed"] is True
    assert "not usable, nothing was held: bank /backup/dervish is not writable" in result["msg"]


def test_release_that_cannot_unmount_exit_4(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_MOUNTED)
    (wrapper / "reply.rc").write_text("4")
    result = run(capsys, wrapper, holder="ansible-ctl-1", state="released")
    assert calls(wrapper) == ["--release ansible-ctl-1"]
    assert result["failed"] is True and result["rc"] == 4
    assert "could not unmount the backup drive from /backup" in result["msg"]


def test_release_unmounts(wrapper, capsys) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_MOUNTED)
    (wrapper / "holds-after.txt").write_text(HOLDS_UNMOUNTED)
    result = run(capsys, wrapper, holder="ansible-ctl-1", state="released")
    assert result["changed"] is True and result["mounted"] is False and result["label"] is None


@pytest.mark.parametrize("args, message", [
    ({"holder": "../etc"}, "holder '../etc' is not a valid holder name"),
    ({"holder": "ok", "state": "released", "pid": 5}, "pid goes with state=held only"),
    ({"holder": "ok", "pid": 0}, "pid 0 is not a process id"),
    ({}, "holder is required (its action plugin names one by default"),
])
def test_bad_arguments_fail_before_any_call(wrapper, capsys, args, message) -> None:
    (wrapper / "holds.txt").write_text(HOLDS_UNMOUNTED)
    result = run(capsys, wrapper, **args)
    assert result["failed"] is True and message in result["msg"]
    assert calls(wrapper) == []
