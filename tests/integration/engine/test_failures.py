"""Failure handling with real rsync behind wrapper scripts: exit codes, retries, disk full, kills, locks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import time

import pytest
from waiting import wait_for

from dervish_engine.summary import parse_summary


def wrapper(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho run >> {tmp_path}/{name}.count\n{body}\n")
    path.chmod(0o755)
    return path


def summary_of(image):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape"))


def hist_images(vault, branch="default"):
    path = vault / "dirvish" / f"{branch}.hist"
    if not path.exists():
        return []
    return [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize("code, status", [
    (23, "error (23) -- partial transfer"),
    (12, "error (12) -- error in rsync protocol data stream"),  # a timeout (30) is fatal: test_hung_client.py
])
def test_retried_error_is_marked_and_never_referenced(bank, small_tree, tmp_path, code, status):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "good", check=0)
    fail = wrapper(tmp_path, "fail", f'rsync "$@"\necho "rsync error: forced failure (code {code})" >&2\nexit {code}')
    conf = vault / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"rsync: {fail}\n")
    proc = bank.run("image", "v1", "--image", "bad", check=1)
    assert f"v1:default image bad failed: {status}" in proc.stderr
    bad = vault / "bad"
    assert summary_of(bad).status == status
    assert stat.S_IMODE(bad.stat().st_mode) == 0o700
    assert (tmp_path / "fail.count").read_text().count("run") == 3
    err = (bad / "rsync_error").read_text()
    assert [line for line in err.splitlines() if line.startswith("***")] == [
        "*** Execution cycle 0 ***", "*** Execution cycle 1 ***", "*** Execution cycle 2 ***"]
    assert (bad / "tree" / "d00").is_dir()  # partial tree kept
    assert sorted(p.name for p in bad.iterdir()) == ["log", "rsync_error", "summary", "tree"]
    assert hist_images(vault) == ["good"]
    # the next good run links against "good", never against "bad"
    conf.write_text(conf.read_text().replace(f"rsync: {fail}\n", ""))
    bank.run("image", "v1", "--image", "next", check=0)
    assert summary_of(vault / "next").reference == "good"
    rel = os.path.join("d00", "s0", "f00000.dat")
    assert os.stat(vault / "next" / "tree" / rel).st_ino == os.stat(vault / "good" / "tree" / rel).st_ino
    assert hist_images(vault) == ["good", "next"]


def test_warning_24_is_a_good_image(bank, small_tree, tmp_path):
    vault = bank.vault("v1", small_tree)
    vanish = wrapper(tmp_path, "vanish", 'rsync "$@"\necho "file has vanished: \\"/x\\"" >&2\nexit 24')
    conf = vault / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"rsync: {vanish}\n")
    proc = bank.run("image", "v1", "--image", "w", check=0)
    assert "warning (24) -- file vanished on sender" in proc.stdout
    assert summary_of(vault / "w").status == "warning (24) -- file vanished on sender"
    assert stat.S_IMODE((vault / "w").stat().st_mode) == 0o755
    assert hist_images(vault) == ["w"]
    assert (tmp_path / "vanish.count").read_text().count("run") == 1
    bank.run("image", "v1", "--image", "after", check=0, env={})
    assert summary_of(vault / "after").reference == "w"


def test_disk_full_is_fatal_once_and_frees_its_own_partial_tree(bank, small_tree, tmp_path):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "old", check=0)
    old_inodes = {p.name: p.stat().st_ino for p in (vault / "old").iterdir()}
    full = wrapper(tmp_path, "full", 'rsync "$@" >/dev/null\n'
                   'echo "rsync: [receiver] write failed on \\"/x\\": No space left on device (28)" >&2\nexit 11')
    conf = vault / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"rsync: {full}\n")
    proc = bank.run("image", "v1", "--image", "full", check=1)
    assert "fatal error (11) -- filesystem full" in proc.stderr
    assert summary_of(vault / "full").status == "fatal error (11) -- filesystem full"
    assert (tmp_path / "full.count").read_text().count("run") == 1
    assert not (vault / "full" / "tree").exists(), "a full bank must not stay full of the failed image"
    assert (vault / "full").stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_ino for p in (vault / "old").iterdir()} == old_inodes
    assert summary_of(vault / "old").status == "success"


@pytest.mark.parametrize("code, status", [
    (1, "fatal error (1) -- syntax or usage error"),
    (99, "error (99) -- unknown rsync exit code"),
])
def test_fatal_and_unknown_codes(bank, small_tree, tmp_path, code, status):
    vault = bank.vault("v1", small_tree)
    fail = wrapper(tmp_path, "fail", f"exit {code}")
    conf = vault / "dirvish" / "default.conf"
    conf.write_text(conf.read_text() + f"rsync: {fail}\n")
    bank.run("image", "v1", "--image", "x", check=1)
    assert summary_of(vault / "x").status == status
    runs = (tmp_path / "fail.count").read_text().count("run")
    assert runs == (1 if code == 1 else 3)
    assert not (vault / "x" / "rsync_error").exists()  # nothing written to stderr


def slow_vault(bank, tree, tmp_path, delay="0.05"):
    slow = wrapper(tmp_path, "slow", f'rsync "$@" | while IFS= read -r l; do printf "%s\\n" "$l"; sleep {delay}; done')
    return bank.vault("v1", tree, f"rsync: {slow}\n")


def test_killed_run_is_recovered_by_the_next_run(bank, small_tree, tmp_path):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "good", check=0)
    conf = vault / "dirvish" / "default.conf"
    slow = wrapper(tmp_path, "slow", 'rsync "$@" | while IFS= read -r l; do printf "%s\\n" "$l"; sleep 0.1; done')
    conf.write_text(conf.read_text() + f"rsync: {slow}\n")
    proc = bank.popen("image", "v1", "--image", "killed", start_new_session=True)
    try:
        assert wait_for(lambda: (tmp_path / "slow.count").exists() and (vault / "killed" / "exclude").exists())
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned wrapper and rsync
        proc.communicate()
    lock = (vault / "dirvish" / "lock_file").read_text().splitlines()
    assert lock[0] == str(proc.pid) and any(line.startswith("boot-id: ") for line in lock)
    assert summary_of(vault / "killed").status is None
    conf.write_text(conf.read_text().replace(f"rsync: {slow}\n", ""))
    result = bank.run("image", "v1", "--image", "after", check=0)
    assert f"stale lock of PID {proc.pid}" in result.stderr and "cleared" in result.stderr
    killed = summary_of(vault / "killed")
    assert killed.status == "error -- interrupted (run killed)"
    assert (vault / "killed" / "summary").read_text().endswith("Status: error -- interrupted (run killed)\n")
    assert not (vault / "killed" / "exclude").exists() and not (vault / "killed" / "rsync_error.tmp").exists()
    assert stat.S_IMODE((vault / "killed").stat().st_mode) == 0o700
    assert summary_of(vault / "after").reference == "good"
    assert hist_images(vault) == ["good", "after"]
    assert not (vault / "dirvish" / "lock_file").exists()


def test_concurrent_run_is_refused_with_exit_3(bank, small_tree, tmp_path):
    vault = slow_vault(bank, small_tree, tmp_path)
    first = bank.popen("image", "v1", "--image", "first")
    try:
        assert wait_for((tmp_path / "slow.count").exists)
        second = bank.run("image", "v1", "--image", "second", check=3)
        assert second.stderr.startswith(f"dervish: vault v1 is being backed up by PID {first.pid} since ")
        assert not (vault / "second").exists()
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert summary_of(vault / "first").status == "success"
    assert hist_images(vault) == ["first"]


def test_lock_from_another_boot_is_stale(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    lock = vault / "dirvish" / "lock_file"
    # a live PID (this test) but another boot id: the lock cannot be from a running backup
    lock.write_text(f"{os.getpid()}\nboot-id: 00000000-0000-0000-0000-000000000000\nhost: {socket.gethostname()}\n")
    proc = bank.run("image", "v1", "--image", "x", check=0)
    assert f"stale lock of PID {os.getpid()}" in proc.stderr
    # a Dirvish-era lock (PID only, no newline) of a live backup process is respected
    backup = subprocess.Popen(["bash", "-c", "exec -a dirvish sleep 60"])
    try:
        time.sleep(0.2)  # exec done: the process's command line names dirvish
        lock.write_text(str(backup.pid))
        proc = bank.run("image", "v1", "--image", "y", check=3)
        assert f"is being backed up by PID {backup.pid}" in proc.stderr
        assert lock.read_text() == str(backup.pid)
    finally:
        backup.kill()
        backup.wait()
    lock.unlink()


def test_runall_isolates_a_failing_vault(bank, small_tree, tmp_path):
    fail = wrapper(tmp_path, "fail", "exit 23")
    bank.vault("a", small_tree)
    bank.vault("b", small_tree, f"rsync: {fail}\n")
    bank.vault("c", small_tree)
    bank.runall = ["a", "b", "c 2026-01-02 03:04"]
    bank.master_extra = "image-default: %Y%m%d-%H%M%S\nRunall-jobs: 2\n"
    bank.write_master()
    proc = bank.run("runall", "--jobs", "2", check=1)
    lines = proc.stdout.splitlines()
    assert any(line.endswith("a done (success)") for line in lines)
    assert any(line.endswith("c done (success)") for line in lines)
    assert any(line.endswith("b done (error (23) -- partial transfer)") for line in lines)
    assert all(line[2] == ":" and line[5] == ":" for line in lines)
    assert [p.name for p in (bank.bank / "c").iterdir() if p.name != "dirvish"] == ["20260102-030400"]
    assert len(hist_images(bank.bank / "a")) == 1 and hist_images(bank.bank / "b") == []
    dry = bank.run("runall", "--dry-run", check=0)
    assert "dervish image c --image-time '2026-01-02 03:04'" in dry.stdout


def test_sigterm_marks_the_image_and_releases_the_lock(bank, small_tree, tmp_path):
    vault = slow_vault(bank, small_tree, tmp_path, delay="0.1")
    proc = bank.popen("image", "v1", "--image", "term", start_new_session=True)
    try:
        assert wait_for(lambda: (tmp_path / "slow.count").exists() and (vault / "term" / "exclude").exists())
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "dervish: terminated by SIGTERM" in err
    assert summary_of(vault / "term").status == "error -- interrupted (SIGTERM)"
    assert not (vault / "dirvish" / "lock_file").exists()
    assert not (vault / "term" / "exclude").exists()
    assert hist_images(vault) == []


def test_a_really_full_bank_keeps_earlier_images_and_frees_the_failed_one(bank, tmp_path):
    """Real ENOSPC: a 4 MiB tmpfs bank, a first image that fits, then a source that does not."""
    bank_fs = tmp_path / "fs"
    bank_fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=700", "tmpfs", str(bank_fs)], check=True)
    try:
        bank = type(bank)(bank_fs)
        src = tmp_path / "src"
        src.mkdir()
        (src / "small").write_bytes(os.urandom(512 * 1024))
        vault = bank.vault("v1", src)
        bank.run("image", "v1", "--image", "first", check=0)
        old = {p.name: p.stat().st_ino for p in (vault / "first" / "tree").iterdir()}
        (src / "big").write_bytes(os.urandom(6 * 1024 * 1024))
        proc = bank.run("image", "v1", "--image", "second", check=1)
        assert "filesystem full" in proc.stderr
        assert summary_of(vault / "second").status.startswith("fatal error")
        assert not (vault / "second" / "tree").exists()
        assert {p.name: p.stat().st_ino for p in (vault / "first" / "tree").iterdir()} == old
        assert summary_of(vault / "first").status == "success"
        (src / "big").unlink()
        bank.run("image", "v1", "--image", "third", check=0)  # the bank is usable again
    finally:
        subprocess.run(["umount", str(bank_fs)], check=True)
