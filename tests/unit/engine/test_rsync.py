"""rsync argv order and exit-code classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from dervish_engine import rsync
from dervish_engine.config import BOOLEAN_FLAGS, VaultConfig


def cfg(**kw):
    base = dict(vault="v", branch="default", bank=Path("/b"), vault_dir=Path("/b/v"), client="localhost",
                tree="/src")
    base.update(kw)
    return VaultConfig(**base)


def test_default_order_local():
    argv = rsync.build_command(cfg(), "/b/v/img", "/src/", Path("/b/v/ref/tree"))
    assert argv == ["rsync", "-vrltH", "--delete", "-pgo", "-D", "-A", "-X", "--numeric-ids", "--stats",
                    "--timeout=600", "--exclude-from=/b/v/img/exclude", "--link-dest=/b/v/ref/tree", "/src/",
                    "/b/v/img/tree"]


def test_every_option_in_documented_order():
    flags = {k: True for k in BOOLEAN_FLAGS}
    c = cfg(flags=flags, rsync="/usr/local/bin/rsync", speed_limit="2.5", password_file="/etc/pw",
            rsync_client="sudo rsync", rsync_options=["--one-file-system", "--hard-links"], rsync_timeout=30,
            rsh="ssh -p 2222", client="host")
    argv = rsync.build_command(c, "/b/v/i", "host:/src/", None, remote=True)
    assert argv == ["/usr/local/bin/rsync", "-vrltH", "--delete", "-pgo", "-D", "-A", "-X", "--numeric-ids",
                    "--stats", "--timeout=30", "-c", "-S", "-W", "-x", "-z", "--bwlimit=250",
                    "--password-file=/etc/pw", "--rsync-path=sudo rsync", "-e",
                    "ssh -o ConnectTimeout=30 -o ServerAliveInterval=10 -o ServerAliveCountMax=3 -p 2222",
                    "--one-file-system", "--hard-links", "--exclude-from=/b/v/i/exclude", "host:/src/",
                    "/b/v/i/tree"]


def test_flags_off_and_no_timeout():
    c = cfg(flags={k: False for k in BOOLEAN_FLAGS}, rsync_timeout=0)
    assert rsync.build_command(c, "/i", "/src/") == ["rsync", "-vrltH", "--delete", "--exclude-from=/i/exclude",
                                                     "/src/", "/i/tree"]


def test_daemon_source_gets_no_rsh():
    argv = rsync.build_command(cfg(client="h", rsh="ssh"), "/i", "h::module/path/", remote=True)
    assert "-e" not in argv


@pytest.mark.parametrize("code, stderr, severity, status, retry", [
    (0, [], "success", "success", False),
    (24, ["file has vanished: \"/x\""], "warning", "warning (24) -- file vanished on sender", False),
    (23, [], "error", "error (23) -- partial transfer", True),
    (30, [], "fatal", "fatal error (30) -- timeout in data send/receive", False),
    (35, [], "fatal", "fatal error (35) -- timeout waiting for daemon connection", False),
    (20, [], "error", "error (20) -- status returned when sent SIGUSR1, SIGINT", True),
    (12, [], "error", "error (12) -- error in rsync protocol data stream", True),
    (1, [], "fatal", "fatal error (1) -- syntax or usage error", False),
    (5, [], "fatal", "fatal error (5) -- error starting client-server protocol", False),
    (127, [], "fatal", "fatal error (127) -- command not found", False),
    (12, ["rsync: write failed on \"/x\": No space left on device (28)"], "fatal",
     "fatal error (12) -- filesystem full", False),
    (23, ["rsync: [receiver] write failed: No space left on device (28)"], "fatal",
     "fatal error (23) -- filesystem full", False),
    (255, ["ssh: connect to host h port 22: Connection refused"], "fatal",
     "fatal error (255) -- connection refused", False),
    (255, [], "error", "error (255) -- unknown rsync exit code", True),
    (99, [], "error", "error (99) -- unknown rsync exit code", True),
])
def test_classify(code, stderr, severity, status, retry):
    out = rsync.classify(code, stderr)
    assert (out.severity, out.status, out.retry) == (severity, status, retry)
    assert out.good == (severity in ("success", "warning"))


def test_classify_counts_results():
    out = rsync.classify(23, ["rsync: readlink_stat(\"/a\") failed: No such file or directory (2)",
                              "rsync error: some files/attrs were not transferred (code 23)",
                              "file has vanished: \"/b\""])
    assert (out.warnings, out.errors) == (1, 2)


def test_log_filter_and_cycle_header():
    assert not rsync.keep_log_line(b"dir/sub/\n")
    assert not rsync.keep_log_line(b"link -> target\n")
    assert not rsync.keep_log_line(b"hard => other\n")
    assert rsync.keep_log_line(b"dir/file.txt\n")
    assert rsync.execution_header(2) == "\n\n*** Execution cycle 2 ***\n\n"


def test_speed_limit():
    assert rsync.speed_limit_kbps("1") == 100
    assert rsync.speed_limit_kbps(None) is None
    assert rsync.speed_limit_kbps("x") is None


@pytest.mark.parametrize("line", [
    'file has vanished: "/home/bob/No space left on device.txt"',
    'rsync: [sender] send_files failed to open "/srv/Connection refused": Permission denied (13)',
])
def test_a_file_name_never_decides_severity(line):
    assert rsync.classify(24, [line]).severity == "warning"
    outcome = rsync.classify(23, [line])
    assert outcome.severity == "error" and outcome.message != rsync.FILESYSTEM_FULL


def test_rsyncs_own_words_after_a_quoted_name_still_count():
    outcome = rsync.classify(11, ['rsync: [receiver] write failed on "/bank/x": No space left on device (28)'])
    assert outcome.severity == "fatal" and outcome.message == rsync.FILESYSTEM_FULL
