"""A Dirvish-style lock (only a PID) whose PID now belongs to something that is not a backup.

Real processes and real lock files: PID 1 (started long before the lock was written, as after a
reboot), a ``sleep`` started after the lock was written (a reused PID), a ``sleep`` that was already
running when the lock was written but is no backup program, and a live dervish process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dervish_engine import lock
from dervish_engine.errors import LockedError

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def write_dirvish_lock(vault: Path, pid: int) -> Path:
    (vault / "dirvish").mkdir(parents=True, exist_ok=True)
    path = lock.lock_path(vault)
    path.write_text(str(pid))  # exactly what Debian's dirvish writes: printf LOCK $$
    return path


@pytest.fixture
def sleeper():
    procs = []

    def start():
        proc = subprocess.Popen(["sleep", "60"])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_pid_1_from_before_a_reboot_is_stale(tmp_path):
    write_dirvish_lock(tmp_path, 1)
    assert os.path.exists("/proc/1")
    assert not lock.is_locked(tmp_path)
    stale = lock.acquire(tmp_path, "v")  # the vault is not blocked forever
    assert stale.pid == 1
    lock.release(tmp_path)


def test_a_pid_reused_by_a_later_process_is_stale(tmp_path, sleeper):
    path = write_dirvish_lock(tmp_path, 0)
    past = time.time() - 3600
    proc = sleeper()
    path.write_text(str(proc.pid))
    os.utime(path, (past, past))  # the lock is older than the process now holding its PID
    assert not lock.is_locked(tmp_path)


def test_a_live_process_that_is_no_backup_is_stale(tmp_path, sleeper):
    proc = sleeper()
    time.sleep(0.05)
    write_dirvish_lock(tmp_path, proc.pid)  # written after the sleep started: only its name tells
    assert not lock.is_locked(tmp_path)


def test_a_live_dervish_run_holding_a_pid_only_lock_is_live(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    vault = tmp_path / "bank" / "v"
    (vault / "dirvish").mkdir(parents=True)
    (vault / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\npre-server: sleep 30\n")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{tmp_path / 'bank'}\n")
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    proc = subprocess.Popen([sys.executable, "-m", "dervish_engine", "--config", str(master), "image", "v"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        path = lock.lock_path(vault)
        for _attempt in range(500):  # the run takes its lock, then sits in its pre-server hook
            if path.exists() and path.read_text().startswith(str(proc.pid)):
                break
            time.sleep(0.01)
        path.write_text(str(proc.pid))  # the same run, seen through a Dirvish-style lock: PID only
        assert lock.is_locked(vault)
        with pytest.raises(LockedError):
            lock.acquire(vault, "v")
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


def test_a_live_perl_dirvish_lookalike_is_live(tmp_path):
    # Dirvish runs as "/usr/bin/perl /usr/sbin/dirvish --vault v": the name in the command line counts
    proc = subprocess.Popen(["/usr/sbin/dirvish", "60"], executable="/bin/sleep")
    try:
        for _attempt in range(100):
            if b"dirvish" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                break
            time.sleep(0.01)
        write_dirvish_lock(tmp_path, proc.pid)
        assert lock.is_locked(tmp_path)
    finally:
        proc.kill()
        proc.wait()
