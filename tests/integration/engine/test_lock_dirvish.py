"""A real Dirvish run's lock (PID only) blocks dervish while Dirvish runs, and not after it died.

Debian's dirvish is started on a vault whose pre-server hook sleeps, so it holds its
``lock_file`` (``printf LOCK $$``) while the test looks; see test_dirvish_interop.py for how Dirvish
is run against a private /etc/dirvish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import test_dirvish_interop as interop

from dervish_engine import lock

ETC_DIRVISH = interop.ETC_DIRVISH
pytestmark = interop.pytestmark  # same skip conditions


def test_a_live_dirvish_run_locks_and_its_leftover_lock_does_not(bank, small_tree, tmp_path):
    hold = tmp_path / "hold"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\n[ -e {hold} ] && exec sleep 60\nexit 0\n")  # Dirvish waits, dervish not
    hook.chmod(0o755)
    hold.touch()
    vault = bank.vault("v", small_tree, f"pre-server: {hook}\n")
    bank.master_extra = "image-default: %Y%m%d-%H%M%S\n"
    bank.write_master()
    if not ETC_DIRVISH.exists():
        ETC_DIRVISH.mkdir()
    script = 'mount --bind "$0" /etc/dirvish && exec "$@"'
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                             str(bank.confdir), "/usr/sbin/dirvish", "--vault", "v", "--init"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        path = lock.lock_path(vault)
        for _attempt in range(1000):
            if path.exists() and path.read_text().strip():
                break
            time.sleep(0.01)
        assert path.read_text().strip() == str(proc.pid)  # Dirvish's own PID, nothing else
        assert lock.is_locked(vault)
        busy = bank.run("image", "v", "--image", "ours")
        assert busy.returncode == 3 and f"being backed up by PID {proc.pid}" in busy.stderr, busy.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    hold.unlink()
    assert path.exists()  # a killed Dirvish leaves its lock behind: every later Dirvish run exits 151
    done = bank.run("image", "v", "--image", "ours")
    assert done.returncode == 0, done.stderr
    assert f"stale lock of PID {proc.pid}" in done.stderr
