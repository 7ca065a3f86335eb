"""Image slots (``Runall-jobs:`` images at once on the whole server): real flocks, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from waiting import wait_for

from dervish_engine import slots

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"

HOLDER = textwrap.dedent("""
    import os, sys, time
    from dervish_engine import slots
    directory, count, name, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    def say(msg):
        print(f"{time.time():.3f} {name} said {msg}", flush=True)
    slot = slots.acquire(directory, count, f"vault {name}", report=say, poll=0.05)
    print(f"{time.time():.3f} {name} got {slot.index}", flush=True)
    time.sleep(hold)
    while len(sys.argv) > 5 and not os.path.exists(sys.argv[5]):  # held until the test says so
        time.sleep(0.02)
    print(f"{time.time():.3f} {name} release", flush=True)
    slot.release()
""")


def holder(directory, count, name, hold, until=None):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    extra = [str(until)] if until else []
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(count), name, str(hold)] + extra,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interval(out: str, name: str):
    times = {line.split()[2]: float(line.split()[0]) for line in out.splitlines() if line.split()[1] == name
             and line.split()[2] in ("got", "release")}
    return times["got"], times["release"]


def finish(proc):
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def test_two_processes_with_one_slot_run_one_after_the_other(tmp_path):
    # the first holds its slot until the second has said it waits: no race with a slow machine
    release = tmp_path / "release-a"
    first = holder(tmp_path, 1, "a", 0, until=release)
    assert wait_for(lambda: (tmp_path / "slot-1").exists() and slots.try_acquire(tmp_path, 1) is None)
    second = holder(tmp_path, 1, "b", 0.1)
    said = second.stdout.readline()
    release.touch()
    out_a, out_b = finish(first), said + finish(second)
    a_got, a_rel = interval(out_a, "a")
    b_got, b_rel = interval(out_b, "b")
    assert b_got >= a_rel, (out_a, out_b)  # no overlap
    waited = [line for line in out_b.splitlines() if " said " in line]
    assert waited and "waiting for an image slot: all 1 (Runall-jobs: 1) are in use by: " in waited[0]
    assert f"{first.pid} vault a since " in waited[0]  # says whom it waits for
    assert "taken after waiting" in waited[-1]


def test_two_slots_let_two_processes_run_at_once(tmp_path):
    first = holder(tmp_path, 2, "a", 0.8)
    second = holder(tmp_path, 2, "b", 0.8)
    out_a, out_b = finish(first), finish(second)
    a_got, a_rel = interval(out_a, "a")
    b_got, b_rel = interval(out_b, "b")
    assert b_got < a_rel and a_got < b_rel  # they overlap
    assert " said " not in out_a + out_b


def test_a_killed_holder_frees_its_slot(tmp_path):
    proc = holder(tmp_path, 1, "a", 120)
    try:
        assert wait_for(lambda: slots.holders(tmp_path, 1))
        assert slots.try_acquire(tmp_path, 1) is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        slot = slots.try_acquire(tmp_path, 1, "after the kill")
        assert slot is not None and slot.index == 1
        slot.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_threads_of_one_process_compete_like_processes(tmp_path):
    held = slots.try_acquire(tmp_path, 1, "main thread")
    assert held is not None
    got = []
    thread = threading.Thread(target=lambda: got.append(slots.acquire(tmp_path, 1, "thread", poll=0.02)))
    thread.start()
    time.sleep(0.3)
    assert not got  # the same process's second open file does not get the flock
    held.release()
    thread.join(10)
    assert got and got[0].waited >= 0.25
    got[0].release()


def test_release_and_reuse_and_count(tmp_path):
    a = slots.try_acquire(tmp_path, 2, "a")
    b = slots.try_acquire(tmp_path, 2, "b")
    assert (a.index, b.index) == (1, 2)
    assert slots.try_acquire(tmp_path, 2) is None
    assert sorted(text.split(" ", 1)[1] for text in slots.holders(tmp_path, 2))[0].startswith("a since ")
    a.release()
    a.release()  # twice is harmless
    c = slots.try_acquire(tmp_path, 2, "c")
    assert c.index == 1
    b.release()
    c.release()
    assert slots.holders(tmp_path, 2) == []  # a released slot says nothing about a holder


def test_check_ends_the_wait(tmp_path):
    held = slots.try_acquire(tmp_path, 1)

    class Stop(BaseException):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise Stop()

    with pytest.raises(Stop):
        slots.acquire(tmp_path, 1, check=check, poll=0.01)
    held.release()


def test_directory_default_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(slots.ENV_DIR, raising=False)
    assert slots.slot_dir() == Path("/run/lock/dervish-slots")
    monkeypatch.setenv(slots.ENV_DIR, str(tmp_path / "env"))
    assert slots.slot_dir() == tmp_path / "env"
    assert slots.slot_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_directory_is_created_root_only_writable(tmp_path):
    directory = tmp_path / "new" / "slots"
    slots.try_acquire(directory, 1).release()
    assert (directory.stat().st_mode & 0o777) == 0o755
    assert ((directory / "slot-1").stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("plant", ["symlink", "world-writable", "other-owner", "file"])
def test_a_planted_slot_directory_is_refused(tmp_path, plant):
    directory = tmp_path / "slots"
    target = tmp_path / "elsewhere"
    target.mkdir()
    if plant == "symlink":
        directory.symlink_to(target)
    elif plant == "world-writable":
        directory.mkdir()
        directory.chmod(0o777)
    elif plant == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory away")
        directory.mkdir()
        os.chown(str(directory), 65534, 65534)
    else:
        directory.write_text("")
    with pytest.raises(slots.SlotError) as err:
        slots.try_acquire(directory, 1)
    assert str(directory) in str(err.value) and slots.ENV_DIR in str(err.value)
    assert not list(target.iterdir())


def test_a_slot_file_that_is_a_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    directory = tmp_path / "slots"
    directory.mkdir()
    (directory / "slot-1").symlink_to(victim)
    with pytest.raises(slots.SlotError):
        slots.try_acquire(directory, 1)
    assert victim.read_text() == "precious\n"
