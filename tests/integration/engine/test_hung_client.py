"""A client that accepts TCP and says nothing costs one bounded attempt, not 3 x rsync-timeout (item G).

The "client" is a real listening socket on this machine that never sends an SSH banner; dervish
reaches it with the real ssh and rsync.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from dervish_engine.summary import parse_summary

NET = os.environ.get("DERVISH_TEST_LAB_NET", "127.0.23")
TIMEOUT = 4


@pytest.fixture
def silent_server():
    """Accepts connections on <net>.250 and keeps them open without a word."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((f"{NET}.250", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _addr = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname(), accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    srv.close()


def test_hung_client_is_one_bounded_fatal_attempt(bank, silent_server, tmp_path):
    (host, port), accepted = silent_server
    rsh = f"ssh -F /dev/null -p {port} -o BatchMode=yes -o UserKnownHostsFile={tmp_path}/kh"
    vault = bank.vault("hung", "/srv/data", f"rsh: {rsh}\nrsync-timeout: {TIMEOUT}\n", client=host)
    start = time.monotonic()
    proc = bank.run("image", "hung", "--image", "x", timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    status = parse_summary((vault / "x" / "summary").read_text()).status
    assert status.startswith("fatal error (") and "timed out" in status, status
    assert status in proc.stderr
    assert len(accepted) == 1, "a hung client is not tried again"
    assert (vault / "x" / "rsync_error").read_text().count("*** Execution cycle") == 1
    assert elapsed < 2 * TIMEOUT, f"{elapsed:.1f} s lost on a hung client (rsync-timeout {TIMEOUT})"
    action = parse_summary((vault / "x" / "summary").read_text()).action
    assert f"ConnectTimeout={TIMEOUT}" in action and "ServerAliveInterval=" in action
