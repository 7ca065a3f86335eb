"""Children die with the engine (item 2); runall stops on SIGTERM (item 3); rsync's stderr is a pipe (item E)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from waiting import wait_for

from dervish_engine.summary import parse_summary


def writers_of(image):
    """PIDs whose arguments name <image>/tree: rsync (and any wrapper) writing into that image."""
    target = os.fsencode(f"{image}/tree")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as fh:
                if target in fh.read().split(b"\0"):
                    pids.append(int(entry))
    return pids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def status_of(image):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape")).status


def slow_source(tmp_path, name="src"):
    src = tmp_path / name
    src.mkdir()
    (src / "big").write_bytes(os.urandom(400 * 1024))
    return src


SLOW = "speed-limit: 0.05\n"  # --bwlimit=5 KB/s: rsync is still writing when the test acts


def kill_leftovers(image):
    for pid in writers_of(image):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_rsyncs_stderr_is_a_pipe_not_a_file_on_the_bank(bank, tmp_path):
    vault = bank.vault("v1", slow_source(tmp_path), SLOW)
    proc = bank.popen("image", "v1", "--image", "x", start_new_session=True)
    image = vault / "x"
    try:
        assert wait_for(lambda: writers_of(image))
        for pid in writers_of(image):
            stderr = os.readlink(f"/proc/{pid}/fd/2")
            assert stderr.startswith("pipe:"), f"rsync's stderr is {stderr}, a full bank would swallow it"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        kill_leftovers(image)


def test_rsync_dies_with_a_killed_engine(bank, tmp_path):
    vault = bank.vault("v1", slow_source(tmp_path), SLOW)
    proc = bank.popen("image", "v1", "--image", "killed", start_new_session=True)
    image = vault / "killed"
    try:
        assert wait_for(lambda: writers_of(image))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert wait_for(lambda: not writers_of(image), timeout=5), "rsync still writes into the killed image"
    finally:
        kill_leftovers(image)
        proc.communicate()


def test_next_run_stops_what_a_killed_run_left_writing(bank, tmp_path):
    src = slow_source(tmp_path)
    wrapper = tmp_path / "rsync-bg"
    # a wrapper whose rsync outlives it: only the next run can stop that one
    wrapper.write_text('#!/bin/sh\nrsync "$@" &\nwait\n')
    wrapper.chmod(0o755)
    vault = bank.vault("v1", src, SLOW + f"rsync: {wrapper}\n")
    proc = bank.popen("image", "v1", "--image", "killed", start_new_session=True)
    image = vault / "killed"
    try:
        assert wait_for(lambda: len(writers_of(image)) >= 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)
        orphans = writers_of(image)
        assert orphans, "the test needs an rsync that outlived the killed run"
        conf = vault / "dirvish" / "default.conf"
        conf.write_text(f"client: localhost\ntree: {src}\n")
        after = bank.run("image", "v1", "--image", "after", check=0)
        assert "processes of the killed run still write into" in after.stderr
        assert not writers_of(image)
        assert not any(_alive(pid) for pid in orphans)  # a zombie waiting for its reaper writes nothing
    finally:
        kill_leftovers(image)
        proc.communicate()
    assert status_of(image) == "error -- interrupted (run killed)"
    assert status_of(vault / "after") == "success"


def test_runall_stops_on_sigterm_and_marks_running_images(bank, tmp_path):
    for name in ("a", "b", "c"):
        bank.vault(name, slow_source(tmp_path, f"src-{name}"), SLOW)
    bank.runall = ["a", "b", "c"]
    bank.master_extra = "image-default: run\nRunall-jobs: 2\n"  # the server's limit: --jobs cannot exceed it
    bank.write_master()
    proc = bank.popen("runall", "--jobs", "2", start_new_session=True)
    try:
        assert wait_for(lambda: writers_of(bank.bank / "a" / "run") and writers_of(bank.bank / "b" / "run"))
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for name in ("a", "b"):
            kill_leftovers(bank.bank / name / "run")
    assert proc.returncode == 143, err
    assert elapsed < 10
    assert "dervish: terminated by SIGTERM" in err and "Traceback" not in err
    for name in ("a", "b"):
        image = bank.bank / name / "run"
        assert status_of(image) == "error -- interrupted (SIGTERM)"
        assert not writers_of(image)
        assert not (bank.bank / name / "dirvish" / "lock_file").exists()
        assert f"{name} done (error -- interrupted (SIGTERM))" in out
    assert "c done (not started: run interrupted (SIGTERM))" in out
    assert not (bank.bank / "c" / "run").exists()


def _hook_pids(marker):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    pids.append(int(entry))
    return pids


def test_runall_stops_an_image_inside_its_pre_server_hook(bank, tmp_path):
    """A hook is stopped with the run, as rsync is: SIGTERM does not wait for a slow hook to end."""
    marker = "3171"  # a distinct sleep, so the test finds exactly its own hook
    src = tmp_path / "src"
    src.mkdir()
    bank.vault("a", src, f"pre-server: sleep {marker}\n")
    bank.runall = ["a"]
    bank.master_extra = "image-default: run\n"
    bank.write_master()
    proc = bank.popen("runall", start_new_session=True)
    try:
        assert wait_for(lambda: _hook_pids(marker))
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _hook_pids(marker):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert elapsed < 10
    assert status_of(bank.bank / "a" / "run") == "error -- interrupted (SIGTERM)"
    assert not (bank.bank / "a" / "dirvish" / "lock_file").exists()
    assert wait_for(lambda: not _hook_pids(marker), timeout=5), "the hook outlived the stopped run"
