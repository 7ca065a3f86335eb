"""The nightly run `dervish-backup` and its provisioning, hardened (issue 7: F, H, 15, 19, 20, 21).

Everything runs for real in the lab: the wrapper on the server host, its drive a loop device
mounted by label, runs killed with SIGKILL, provisioning with site.yml, rotation with logrotate.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
WRAPPER = "/usr/local/sbin/dervish-backup"
MASTER = "/etc/dervish/master.conf"
LOG = "/var/log/dervish/backup.log"
DRIVELOG = "/var/log/backup_drivelog"
HOOK = "sleep 377"   # a pre-server hook slow enough to kill the run inside it


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    run = run_playbook(lab, "site.yml")
    assert run.rc == 0, run.stdout[-6000:]
    return run


def _mounted(lab: Lab) -> bool:
    return lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode == 0


def _log_lines(lab: Lab) -> int:
    return int(lab.ssh(lab.server, f"cat {LOG} 2>/dev/null | wc -l").stdout)


def _start_slow_run(lab: Lab, vault: str) -> tuple[int, int]:
    """Start the wrapper in its own session with a slow pre-server hook; return (session id, hook pid)."""
    lab.ssh(lab.server, f"cp {MASTER} /root/master.conf.saved && echo 'pre-server: {HOOK}' >> {MASTER}")
    sid = int(lab.ssh(lab.server, f"setsid {WRAPPER} {vault} </dev/null >/root/slow-run.out 2>&1 & echo $!").stdout)
    try:
        for _attempt in range(300):
            found = lab.ssh(lab.server, f"pgrep -s {sid} -fx '{HOOK}'", check=False).stdout.split()
            if found:
                return sid, int(found[0])
            time.sleep(0.2)
        raise AssertionError("the slow hook never started: " + lab.ssh(lab.server, "cat /root/slow-run.out").stdout)
    finally:
        lab.ssh(lab.server, f"mv /root/master.conf.saved {MASTER}")


def _wait_gone(lab: Lab, sid: int) -> None:
    for _attempt in range(300):
        if lab.ssh(lab.server, f"pgrep -s {sid}", check=False).returncode != 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"session {sid} still has processes")


def _clean_up(lab: Lab, sid: int) -> None:
    """Whatever a test left: no process of its run, the drive unmounted, no record of it."""
    lab.ssh(lab.server, f"pkill -KILL -s {sid}", check=False)
    _wait_gone(lab, sid)
    lab.ssh(lab.server, "! mountpoint -q /backup || umount /backup; rm -f /run/dervish-backup.mounted")


def test_the_run_has_low_cpu_and_io_priority(lab: Lab, provisioned) -> None:
    sid, hook = _start_slow_run(lab, "laptop2-etc")
    try:
        # defaults: nice 10, best-effort I/O at level 7; inherited by dervish and its hooks
        assert lab.ssh(lab.server, f"ps -o ni= -p {hook}").stdout.strip() == "10"
        assert lab.ssh(lab.server, f"ionice -p {hook}").stdout.strip() == "best-effort: prio 7"
    finally:
        _clean_up(lab, sid)


def _kill_a_run(lab: Lab) -> int:
    """Start a run and SIGKILL it (and everything it started) inside its pre-server hook."""
    sid, _hook = _start_slow_run(lab, "laptop2-etc")
    lab.ssh(lab.server, f"kill -KILL -- -{sid}")
    _wait_gone(lab, sid)
    return sid


def test_killed_run_leaves_the_drive_mounted_and_the_next_run_says_so_and_unmounts(lab: Lab, provisioned) -> None:
    sid = _kill_a_run(lab)
    try:
        assert _mounted(lab), "the killed run should have left the drive mounted (test premise)"
        before = _log_lines(lab)
        run = lab.ssh(lab.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out
        assert re.search(r"left mounted by a run that died \(pid \d+", out), out
        assert not _mounted(lab), "the next run must unmount the drive a dead run left mounted"
        assert "left mounted by a run that died" in lab.ssh(lab.server, f"tail -n +{before + 1} {LOG}").stdout

        again = lab.ssh(lab.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
        assert again.returncode == 0 and "left mounted" not in again.stdout, again.stdout
        assert not _mounted(lab)
    finally:
        _clean_up(lab, sid)


def test_the_engines_messages_reach_the_log(lab: Lab, provisioned) -> None:
    sid = _kill_a_run(lab)
    try:
        before = _log_lines(lab)
        run = lab.ssh(lab.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        new_log = lab.ssh(lab.server, f"tail -n +{before + 1} {LOG}").stdout
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*stale lock of PID \d+ .*cleared", new_log, re.M), new_log
        assert "marked: error -- interrupted" in new_log, new_log
    finally:
        _clean_up(lab, sid)


def test_a_drive_mounted_by_hand_stays_mounted(lab: Lab, provisioned) -> None:
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        run = lab.ssh(lab.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "left mounted" not in run.stdout
        assert _mounted(lab)
    finally:
        lab.ssh(lab.server, "umount /backup")


def test_a_read_only_drive_is_unusable_exit_2(lab: Lab, provisioned) -> None:
    lab.ssh(lab.server, "mount -o ro LABEL=BACKUPDRIVE /backup")
    try:
        run = lab.ssh(lab.server, WRAPPER, check=False, timeout=600)
        out = run.stdout + run.stderr
        assert run.returncode == 2, out
        assert re.search(r"bank /backup/dervish is not writable .*nothing backed up", out), out
        assert "ERROR: bank /backup/dervish is not writable" in lab.ssh(lab.server, f"tail -3 {LOG}").stdout
    finally:
        lab.ssh(lab.server, "umount /backup")


def test_provisioning_leaves_the_drive_alone(lab: Lab, provisioned) -> None:
    assert not _mounted(lab)
    drivelog = lab.ssh(lab.server, f"cat {DRIVELOG}").stdout
    before = _log_lines(lab)
    run = run_playbook(lab, "site.yml")
    assert run.rc == 0, run.stdout[-4000:]
    assert lab.ssh(lab.server, f"cat {DRIVELOG}").stdout == drivelog
    assert "mounted" not in lab.ssh(lab.server, f"tail -n +{before + 1} {LOG}").stdout


def test_provisioning_succeeds_while_a_backup_runs(lab: Lab, provisioned) -> None:
    sid, hook = _start_slow_run(lab, "laptop1-etc")
    try:
        assert _mounted(lab)
        run = run_playbook(lab, "site.yml")
        assert run.rc == 0, run.stdout[-4000:]
        assert _mounted(lab), "provisioning must leave the running backup's drive alone"
        assert lab.ssh(lab.server, f"pgrep -s {sid} -fx '{HOOK}'", check=False).returncode == 0
        lab.ssh(lab.server, f"kill {hook}")   # the hook fails, the run ends and unmounts
        _wait_gone(lab, sid)
        assert not _mounted(lab)
    finally:
        _clean_up(lab, sid)


def test_shipped_logrotate_rules_rotate_with_dates(lab: Lab, provisioned) -> None:
    today = time.strftime("%Y%m%d")
    lab.ssh(lab.server, f"test -s {LOG} && test -s {DRIVELOG}")
    debug = lab.ssh(lab.server, "logrotate -d /etc/logrotate.d/dervish 2>&1")
    assert "error" not in debug.stdout.lower(), debug.stdout
    assert f"{LOG}" in debug.stdout and DRIVELOG in debug.stdout
    # dateext rotates a log once a day: earlier tests' rotations of today must not block this one
    lab.ssh(lab.server, f"rm -f /var/log/dervish/backup.log-{today}* {DRIVELOG}-{today}*")
    lab.ssh(lab.server, "logrotate -f -s /root/lr.state /etc/logrotate.d/dervish")
    files = lab.ssh(lab.server, f"ls /var/log/dervish /var/log | grep -E '(backup.log|backup_drivelog)-{today}'").stdout
    assert f"backup.log-{today}" in files and f"backup_drivelog-{today}" in files, files
    assert lab.ssh(lab.server, f"stat -c %a {LOG}").stdout.strip() == "600"

    lab.ssh("laptop1", "test -s /var/log/dervish-gate.log || echo seed >> /var/log/dervish-gate.log")
    debug = lab.ssh("laptop1", "logrotate -d /etc/logrotate.d/dervish-gate 2>&1")
    assert "error" not in debug.stdout.lower() and "/var/log/dervish-gate.log" in debug.stdout, debug.stdout
    lab.ssh("laptop1", f"rm -f /var/log/dervish-gate.log-{today}*")
    lab.ssh("laptop1", "logrotate -f -s /root/lr.state /etc/logrotate.d/dervish-gate")
    assert f"dervish-gate.log-{today}" in lab.ssh("laptop1", "ls /var/log").stdout


def test_check_mode_reports_a_client_whose_host_key_is_not_pinned(lab: Lab, provisioned) -> None:
    lab.ssh(lab.server, "cp /root/.ssh/known_hosts /root/known_hosts.saved && ssh-keygen -q -R laptop2 "
                        "-f /root/.ssh/known_hosts")
    try:
        run = run_playbook(lab, "site.yml", check=True, limit="backup")
        assert run.rc != 0
        assert "laptop2: its host key is not pinned on backup" in run.stdout, run.stdout[-4000:]
    finally:
        lab.ssh(lab.server, "mv /root/known_hosts.saved /root/.ssh/known_hosts")


def test_mail_recipient_and_transport(lab: Lab, provisioned, tmp_path: Path) -> None:
    # the lab has no MTA: provisioning says mail of failed runs would be lost
    assert lab.ssh(lab.server, "test -e /usr/sbin/sendmail", check=False).returncode != 0
    assert "no mail transport" in provisioned.stdout and "/usr/sbin/sendmail" in provisioned.stdout
    assert re.search(r"^MAILTO=root$", lab.ssh(lab.server, "cat /etc/cron.d/dervish").stdout, re.M)
    inventory = lab_inventory(tmp_path)
    lab.ssh(lab.server, "printf '#!/bin/sh\\ncat >/dev/null\\n' > /usr/sbin/sendmail && chmod 755 /usr/sbin/sendmail")
    try:
        run = run_playbook(lab, "site.yml", inventory=inventory, limit="backup",
                           extravars={"backup_server_mailto": "ops@example.org"})
        assert run.rc == 0, run.stdout[-4000:]
        assert "no mail transport" not in run.stdout
        assert re.search(r"^MAILTO=ops@example.org$", lab.ssh(lab.server, "cat /etc/cron.d/dervish").stdout, re.M)
    finally:
        lab.ssh(lab.server, "rm -f /usr/sbin/sendmail")
        back = run_playbook(lab, "site.yml", limit="backup")
        assert back.rc == 0, back.stdout[-4000:]


def test_a_stopped_run_stops_dervish_and_unmounts_at_once(lab: Lab, provisioned) -> None:
    """SIGTERM to the wrapper alone (as `kill PID` or cron's end would send it) stops the run now:
    dervish and its slow hook are stopped, and the drive is unmounted."""
    sid, hook = _start_slow_run(lab, "laptop2-etc")
    try:
        before = _log_lines(lab)
        start = time.monotonic()
        lab.ssh(lab.server, f"kill -TERM {sid}")
        _wait_gone(lab, sid)
        assert time.monotonic() - start < 30, "the run kept going after SIGTERM"
        assert not _mounted(lab), "a stopped run must unmount the drive"
        assert lab.ssh(lab.server, f"test ! -e /proc/{hook}", check=False).returncode == 0
        new_log = lab.ssh(lab.server, f"tail -n +{before + 1} {LOG}").stdout
        assert "stopped by SIGTERM: stopping dervish" in new_log, new_log
        assert "drive unmounted" in new_log, new_log
        again = lab.ssh(lab.server, f"{WRAPPER} laptop2-etc", check=False, timeout=600)
        assert again.returncode == 0 and "left mounted" not in again.stdout, again.stdout + again.stderr
    finally:
        _clean_up(lab, sid)
