"""Drive holds (issue 8, part 1): `dervish-backup --acquire/--release` and the module backup_drive.

Everything runs for real in the lab: the wrapper on the server host, its drive a loop device with a
filesystem labelled BACKUPDRIVE, holders are real processes (sleep) on the server, the module runs
through ansible against the lab's server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import REPO_ROOT, Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
WRAPPER = "/usr/local/sbin/dervish-backup"
LOG = "/var/log/dervish/backup.log"
DRIVELOG = "/var/log/backup_drivelog"
RECORD = "/run/dervish-backup.mounted"


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    run = run_playbook(lab, "site.yml")
    assert run.rc == 0, run.stdout[-6000:]
    return run


@pytest.fixture
def server(lab: Lab, provisioned):
    """The server with no hold, the drive unmounted; whatever a test left is cleaned up after it."""
    _reset(lab)
    yield lab
    _reset(lab)


_started: list[int] = []   # holder processes the tests started on the server, ended by their id


def _reset(lab: Lab) -> None:
    if _started:
        lab.ssh(lab.server, "kill " + " ".join(map(str, _started)), check=False)
        _started.clear()
    lab.ssh(lab.server, "rm -rf /run/dervish/holds; ! mountpoint -q /backup || umount /backup; rm -f " + RECORD,
            check=False)


def _mounted(lab: Lab) -> bool:
    return lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode == 0


def _lines(lab: Lab, path: str) -> int:
    return int(lab.ssh(lab.server, f"cat {path} 2>/dev/null | wc -l").stdout)


def _since(lab: Lab, path: str, before: int) -> str:
    return lab.ssh(lab.server, f"tail -n +{before + 1} {path}").stdout


def _holder_process(lab: Lab, seconds: int = 600) -> int:
    """A real process on the server, outside the ssh session, whose life keeps a hold live."""
    pid = int(lab.ssh(lab.server, f"setsid sleep {seconds} </dev/null >/dev/null 2>&1 & echo $!").stdout)
    _started.append(pid)
    return pid


def _acquire(lab: Lab, holder: str, pid: int | None = None, env: str = "") -> subprocess.CompletedProcess[str]:
    pid_arg = f" --pid {pid}" if pid else ""
    return lab.ssh(lab.server, f"{env} {WRAPPER} --acquire {holder}{pid_arg}", check=False, timeout=300)


def _holds(lab: Lab) -> list[str]:
    return re.findall(r"^HOLD=(.*)$", lab.ssh(lab.server, f"{WRAPPER} --holds").stdout, re.M)


def test_a_hold_keeps_the_drive_mounted_across_a_second_acquire(server: Lab) -> None:
    log, drivelog = _lines(server, LOG), _lines(server, DRIVELOG)
    first, second = _holder_process(server), _holder_process(server)
    one = _acquire(server, "play-one", first)
    assert one.returncode == 0, one.stderr
    assert one.stdout == "DISKLABEL=lab-drive-1\n", "stdout is exactly the one DISKLABEL line"
    assert _mounted(server)
    two = _acquire(server, "play-two", second)
    assert two.returncode == 0 and two.stdout == "DISKLABEL=lab-drive-1\n", two.stderr
    assert len(re.findall(r"mounted on /backup", _since(server, LOG, log))) == 1, "mounted once"
    new_drivelog = _since(server, DRIVELOG, drivelog).splitlines()
    assert [line.split(" held by ")[1] for line in new_drivelog] == ["play-one", "play-two"], new_drivelog
    assert all(line.startswith("lab-drive-1 ") for line in new_drivelog)
    assert sorted(_holds(server)) == [f"play-one {first} live", f"play-two {second} live"]
    assert server.ssh(server.server, "stat -c %a /run/dervish/holds").stdout.strip() == "700"


def test_release_unmounts_only_when_the_last_live_hold_goes(server: Lab) -> None:
    first, second = _holder_process(server), _holder_process(server)
    assert _acquire(server, "play-one", first).returncode == 0
    assert _acquire(server, "play-two", second).returncode == 0
    release = server.ssh(server.server, f"{WRAPPER} --release play-one", check=False)
    assert release.returncode == 0 and release.stdout == "", release.stderr
    assert _mounted(server), "play-two still holds the drive"
    assert _holds(server) == [f"play-two {second} live"]
    server.ssh(server.server, f"{WRAPPER} --release play-two")
    assert not _mounted(server), "the last live hold is gone: the drive is unmounted"
    assert server.ssh(server.server, f"test -e {RECORD}", check=False).returncode != 0
    again = server.ssh(server.server, f"{WRAPPER} --release play-two", check=False)
    assert again.returncode == 0, "releasing twice is harmless"


def test_a_drive_mounted_by_hand_is_held_and_stays_mounted(server: Lab) -> None:
    server.ssh(server.server, "mount LABEL=BACKUPDRIVE /backup")
    holder = _holder_process(server)
    assert _acquire(server, "by-hand", holder).returncode == 0
    server.ssh(server.server, f"{WRAPPER} --release by-hand")
    assert _mounted(server), "dervish did not mount it, so it does not unmount it"


def test_a_nightly_run_during_a_hold_runs_and_leaves_the_drive_mounted(server: Lab) -> None:
    holder = _holder_process(server)
    assert _acquire(server, "playbook", holder).returncode == 0
    drivelog = _lines(server, DRIVELOG)
    run = server.ssh(server.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _mounted(server), "the playbook still holds the drive"
    assert _holds(server) == [f"playbook {holder} live"], "the nightly run dropped its own hold only"
    new = _since(server, DRIVELOG, drivelog).splitlines()
    assert re.match(r"lab-drive-1 .* held by nightly-\d+$", new[0]) and new[-1].endswith("finished: ok"), new
    server.ssh(server.server, f"{WRAPPER} --release playbook")
    assert not _mounted(server)


def test_a_dead_holders_hold_ages_out_and_the_next_run_unmounts(server: Lab) -> None:
    # the holder process ends at once: the hold lives on for its grace time (3 s here), no longer
    short = server.ssh(server.server, f"DERVISH_BACKUP_HOLD_GRACE=3 bash -c '{WRAPPER} --acquire interrupted; true'",
                       check=False)
    assert short.returncode == 0, short.stderr
    assert _mounted(server)
    [hold] = _holds(server)
    assert re.fullmatch(r"interrupted \d+ live", hold), "live for its grace time after its process ended"
    server.ssh(server.server, f"{WRAPPER} --release someone-else")
    assert _mounted(server), "inside the grace time a release of another holder leaves the drive mounted"
    time.sleep(4)
    assert re.fullmatch(r"interrupted \d+ expired", _holds(server)[0])
    log = _lines(server, LOG)
    run = server.ssh(server.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not _mounted(server), "the next run unmounts a drive whose holds all aged out"
    new_log = _since(server, LOG, log)
    assert re.search(r"hold of interrupted \(pid \d+\) expired", new_log), new_log
    assert "left mounted by a run that died" not in new_log
    assert _holds(server) == []


def test_the_default_grace_keeps_a_hold_of_an_ended_process(server: Lab) -> None:
    server.ssh(server.server, f"bash -c '{WRAPPER} --acquire next-task; true'")
    time.sleep(2)
    run = server.ssh(server.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert _mounted(server), "within backup_server_drive_hold_grace the drive stays mounted"


def _remove_drive(lab: Lab) -> list[str]:
    loop = (lab.dir / "drive.loop").read_text().strip()
    nodes = lab.ssh(lab.server, f"stat -c '%n %t %T' {loop} {loop}p1 {loop}p2").stdout.splitlines()
    lab.ssh(lab.server, f"rm {loop} {loop}p1 {loop}p2")
    return nodes


def _restore_drive(lab: Lab, nodes: list[str]) -> None:
    for line in nodes:
        name, major, minor = line.split()
        lab.ssh(lab.server, f"mknod -m 660 {name} b $((0x{major})) $((0x{minor}))")


def test_absent_drive_acquire_exits_2_and_writes_nothing(server: Lab) -> None:
    nodes = _remove_drive(server)
    try:
        drivelog = _lines(server, DRIVELOG)
        run = _acquire(server, "play-absent", _holder_process(server))
        assert run.returncode == 2, run.stdout + run.stderr
        assert run.stdout == ""
        assert "backup drive LABEL=BACKUPDRIVE not found" in run.stderr
        assert server.ssh(server.server, "ls -A /backup").stdout == "", "nothing on the root filesystem"
        assert _holds(server) == []
        assert server.ssh(server.server, f"test -e {RECORD}", check=False).returncode != 0
        new = _since(server, DRIVELOG, drivelog).splitlines()
        assert len(new) == 1 and new[0].startswith("NO-DRIVE ") and "play-absent" in new[0], new

        module = _module(server, "holder=play-absent")
        assert module["failed"] is True
        assert module["msg"].startswith("backup drive LABEL=BACKUPDRIVE is absent: nothing was mounted or written")
        assert server.ssh(server.server, "ls -A /backup").stdout == ""
        checked = _module(server, "holder=play-absent", check=True)
        assert checked["failed"] is True and "is not present" in checked["msg"]
    finally:
        _restore_drive(server, nodes)


def _module(lab: Lab, args: str, check: bool = False) -> dict:
    """Run dervish.backup.backup_drive on the lab's server; its result as a dict."""
    cmd = [str(Path(sys.executable).parent / "ansible"), lab.server, "-i", str(REPO_ROOT / "inventory" / "lab"),
           "-o", "-m", "dervish.backup.backup_drive", "-a", args] + (["--check"] if check else [])
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir),
           "ANSIBLE_NOCOLOR": "1"}
    out = subprocess.run(cmd, text=True, capture_output=True, env=env, cwd=REPO_ROOT, timeout=300,
                         check=False).stdout
    match = re.search(r"^\S+ \| (?:CHANGED|SUCCESS|FAILED!) => (\{.*\})$", out, re.M)
    assert match, out
    result = json.loads(match.group(1))
    result.setdefault("failed", False)
    return result


def test_the_module_holds_and_releases(server: Lab) -> None:
    checked = _module(server, "holder=ansible-ctl-1", check=True)
    assert checked["changed"] is True and checked["mounted"] is True and not checked["failed"], checked
    assert not _mounted(server), "check mode never mounts"
    assert _holds(server) == []

    held = _module(server, "holder=ansible-ctl-1")
    assert held["changed"] is True and held["mounted"] is True, held
    assert held["label"] == "lab-drive-1" and held["mount_point"] == "/backup"
    assert held["holds"] == ["ansible-ctl-1"]
    assert _mounted(server), "held after the module's process ended: the grace time"
    again = _module(server, "holder=ansible-ctl-2")
    assert again["changed"] is False and again["mounted"] is True, again

    would = _module(server, "holder=ansible-ctl-1 state=released", check=True)
    assert would["changed"] is False and would["mounted"] is True, "ansible-ctl-2 still holds it"
    released = _module(server, "holder=ansible-ctl-1 state=released")
    assert released["changed"] is False and released["mounted"] is True, released
    assert released["holds"] == ["ansible-ctl-2"]
    would = _module(server, "holder=ansible-ctl-2 state=released", check=True)
    assert would["changed"] is True and would["mounted"] is False
    assert _mounted(server), "check mode never unmounts"
    released = _module(server, "holder=ansible-ctl-2 state=released")
    assert released["changed"] is True and released["mounted"] is False and released["label"] is None, released
    assert not _mounted(server)


def test_the_module_refuses_a_bad_holder(server: Lab) -> None:
    result = _module(server, "holder=../../etc")
    assert result["failed"] is True and "is not a valid holder name" in result["msg"]
    assert _holds(server) == []
