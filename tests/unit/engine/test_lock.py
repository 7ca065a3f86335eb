"""Vault lock: format, live/stale detection with real processes, atomic take and release."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from dervish_engine import lock
from dervish_engine.errors import LockedError


def test_acquire_writes_pid_first_and_release_removes(tmp_path):
    assert lock.acquire(tmp_path, "v", tmp_path / "img") is None
    lines = lock.lock_path(tmp_path).read_text().splitlines()
    assert lines[0] == str(os.getpid())
    info = lock.read_lock(tmp_path)
    assert info.boot_id == lock.boot_id() and info.host == socket.gethostname()
    assert info.image == str(tmp_path / "img") and info.pid_start == lock.process_start(os.getpid())
    assert lock.is_locked(tmp_path)
    with pytest.raises(LockedError, match=rf"vault v is being backed up by PID {os.getpid()} since "):
        lock.acquire(tmp_path, "v")
    lock.release(tmp_path)
    assert not lock.lock_path(tmp_path).exists()
    assert not lock.is_locked(tmp_path)


def test_dead_pid_is_stale(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "dirvish").mkdir()
    lock.lock_path(tmp_path).write_text(str(proc.pid))  # Dirvish-era content: PID, no newline
    assert not lock.is_locked(tmp_path)
    stale = lock.acquire(tmp_path, "v")
    assert stale.pid == proc.pid
    lock.release(tmp_path)


def test_zombie_and_reused_pid_are_stale(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # not reaped yet -> zombie (wait until the kernel says so)
        for _attempt in range(200):
            stat = lock._proc_stat(proc.pid)
            if stat and stat[0] == "Z":
                break
            subprocess.run(["sleep", "0.01"], check=False)
        assert not lock.lock_is_live(lock.LockInfo(proc.pid, lock.boot_id(), socket.gethostname()))
    finally:
        proc.wait()
    me = lock.LockInfo(os.getpid(), lock.boot_id(), socket.gethostname(), pid_start="1")
    assert not lock.lock_is_live(me)  # same PID, different start time: PID was reused
    assert lock.lock_is_live(lock.LockInfo(os.getpid(), lock.boot_id(), socket.gethostname(),
                                           lock.process_start(os.getpid())))


def test_other_boot_is_stale_other_host_is_live():
    assert not lock.lock_is_live(lock.LockInfo(os.getpid(), "another-boot", socket.gethostname()))
    assert lock.lock_is_live(lock.LockInfo(999999, "another-boot", "some-other-host"))
    assert not lock.lock_is_live(lock.LockInfo(0))


def test_parse_lock():
    info = lock.parse_lock("42\nboot-id: b\nhost: h\npid-start: 7\nstarted: 2026-01-01 00:00:00\nimage: /x y\n")
    assert info == lock.LockInfo(42, "b", "h", "7", "2026-01-01 00:00:00", "/x y")
    assert lock.parse_lock(info.render()) == info
    assert lock.parse_lock("garbage") is None


def test_unreadable_lock_is_stale(tmp_path):
    (tmp_path / "dirvish").mkdir()
    lock.lock_path(tmp_path).write_text("not a pid\n")
    assert lock.read_lock(tmp_path).pid == 0
    assert not lock.is_locked(tmp_path)


def test_release_leaves_foreign_lock(tmp_path):
    (tmp_path / "dirvish").mkdir()
    lock.lock_path(tmp_path).write_text("1\n")
    lock.release(tmp_path)
    assert lock.lock_path(tmp_path).exists()


def test_a_dead_lock_of_this_boot_is_stale_even_after_a_rename():
    info = lock.LockInfo(pid=2 ** 22 + 12345, boot_id=lock.boot_id(), host="old-name-of-this-host")
    assert not lock.lock_is_live(info)


def test_another_hosts_lock_without_a_matching_boot_is_kept():
    info = lock.LockInfo(pid=2 ** 22 + 12345, boot_id="0" * 32, host="some-other-host")
    assert lock.lock_is_live(info)
