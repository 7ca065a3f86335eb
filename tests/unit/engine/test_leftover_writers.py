"""The run after a killed one stops only what carries dervish's rsync arguments for that image (item 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dervish_engine.children import stop_leftover_writers, writers_of
from dervish_engine.errors import LockedError

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def procs():
    started = []

    def start(*args):
        proc = subprocess.Popen(SLEEP + list(args))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_only_processes_with_both_rsync_arguments_are_writers(tmp_path, procs):
    image = tmp_path / "img"
    looker = procs(f"{image}/tree")  # an admin's du/ls of the tree
    writer = procs("-vrltH", f"--exclude-from={image}/exclude", "/src/", f"{image}/tree")
    other = procs(f"--exclude-from={tmp_path}/other/exclude", f"{tmp_path}/other/tree")
    assert writers_of(image) == [writer.pid]
    messages = []
    stop_leftover_writers(image, messages.append)
    assert writer.wait(timeout=5) is not None
    assert looker.poll() is None and other.poll() is None
    assert messages == [f"processes of the killed run still write into {image}: stopping PID {writer.pid}"]


def test_a_writer_that_will_not_die_refuses_the_run(tmp_path, monkeypatch):
    image = tmp_path / "img"
    monkeypatch.setattr("dervish_engine.children.writers_of", lambda _image: [4242])
    monkeypatch.setattr("dervish_engine.children.alive", lambda _pid: True)  # e.g. stuck in D state
    monkeypatch.setattr("dervish_engine.children.os.kill", lambda *_a: None)
    with pytest.raises(LockedError, match="processes 4242 of a killed run still write into .* not started"):
        stop_leftover_writers(image, lambda _m: None, grace=0.1)
