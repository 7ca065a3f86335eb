"""The action's release (one shell command on the server, module_utils drive_holds) and the module's
release give the same result for the same wrapper answers: one definition of what a release reports."""

from __future__ import annotations

import json
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args
from test_backup_drive import HOLDS_MOUNTED, HOLDS_UNMOUNTED

from ansible_collections.dervish.backup.plugins.module_utils import drive_holds
from ansible_collections.dervish.backup.plugins.modules import backup_drive as mod

NO_DRIVE = "DRIVE=\nMOUNT_POINT=\nDISKLABEL=fixed-banks\n"


def by_module(capsys, wrapper, holder):
    with patch_module_args({"holder": holder, "state": "released", "wrapper": str(wrapper / "dervish-backup")}), \
            pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def by_command(wrapper, holder):
    """What the action does: the one command (as the server's shell runs it), then its result."""
    path = str(wrapper / "dervish-backup")
    done = subprocess.run(["/bin/sh", "-c", drive_holds.release_command(path, holder)], capture_output=True,
                          text=True, check=True)
    return drive_holds.release_result(path, holder, done.stdout, done.stderr)


def comparable(result):
    return {k: v for k, v in result.items() if k not in ("invocation", "stdout", "warnings")}


@pytest.mark.parametrize("before, after, rc, err", [
    (HOLDS_MOUNTED, HOLDS_UNMOUNTED, "0", ""),                                   # the last hold goes: unmounted
    (HOLDS_MOUNTED, HOLDS_MOUNTED, "0", ""),                                 # someone else still holds it
    (NO_DRIVE, NO_DRIVE, "0", ""),                                           # fixed banks, no drive
    (HOLDS_MOUNTED, HOLDS_MOUNTED, "4", "x ERROR: umount: /backup: target is busy\n"),
    (HOLDS_MOUNTED, HOLDS_MOUNTED, "64", "x ERROR: bad holder\n"),
    (HOLDS_MOUNTED, HOLDS_MOUNTED, "1", "x ERROR: something else\n"),
])
def test_the_command_and_the_module_report_a_release_alike(wrapper, capsys, before, after, rc, err) -> None:
    (wrapper / "holds.txt").write_text(before)
    (wrapper / "holds-after.txt").write_text(after)
    (wrapper / "reply.rc").write_text(rc)
    (wrapper / "reply.err").write_text(err)
    module = by_module(capsys, wrapper, "ansible-ctl-1")
    (wrapper / "called").unlink()
    command = by_command(wrapper, "ansible-ctl-1")
    assert (wrapper / "calls.txt").read_text().splitlines() == ["--release ansible-ctl-1"] * 2
    assert comparable(command) == comparable(module)
    assert command.get("failed", False) is (rc != "0")


def test_a_failing_holds_stops_the_command_before_the_release(tmp_path) -> None:
    script = tmp_path / "dervish-backup"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls.txt\necho 'x ERROR: no config' >&2\nexit 3\n")
    script.chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", drive_holds.release_command(str(script), "h")], capture_output=True,
                          text=True, check=True)
    result = drive_holds.release_result(str(script), "h", done.stdout, done.stderr)
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["--holds"]
    assert result["failed"] is True and result["rc"] == 3
    assert result["msg"] == (f"{script} --holds exited 3: no config "
                             "(is this host a dervish backup server, provisioned by backup_server?)")


def test_an_answer_without_steps_fails_clearly() -> None:
    result = drive_holds.release_result("/w", "h", "", "sudo: a password is required\n")
    assert result["failed"] is True and result["msg"] == "/w gave no answer to --holds: sudo: a password is required"


def test_holder_and_wrapper_are_quoted_for_the_shell() -> None:
    command = drive_holds.release_command("/opt/my wrapper", "h;rm")
    assert "'/opt/my wrapper' --release 'h;rm'" in command
