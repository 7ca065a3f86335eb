"""The real cause reaches the Status (item 7); a dead or hung client costs one bounded attempt (item G)."""

from __future__ import annotations

import pytest

from dervish_engine import rsync


@pytest.mark.parametrize("code, lines, status", [
    (23, ['rsync: [sender] change_dir "/srv/nope" failed: No such file or directory (2)',
          "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338)"],
     "fatal error (23) -- tree not found on the client"),
    (23, ['rsync: [sender] change_dir "/etc/hostname" failed: Not a directory (20)'],
     "fatal error (23) -- tree is not a directory on the client"),
    (23, ['rsync: [sender] send_files failed to open "/srv/x": Permission denied (13)',
          "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338)"],
     'error (23) -- partial transfer: rsync: [sender] send_files failed to open "/srv/x": Permission denied (13)'),
    (126, ["dervish: cannot run rsync: Argument list too long"],
     "fatal error (126) -- command could not be run: dervish: cannot run rsync: Argument list too long"),
    (1, ["rsync: --bogus: unknown option"], "fatal error (1) -- syntax or usage error: rsync: --bogus: unknown option"),
])
def test_status_carries_rsyncs_own_error(code, lines, status):
    assert rsync.classify(code, lines).status == status


def test_over_long_detail_is_one_short_line():
    line = "rsync: [sender] " + "x" * 1000 + "\tfailed"
    detail = rsync.classify(23, [line]).detail
    assert len(detail) == rsync.MAX_DETAIL and "\t" not in detail


@pytest.mark.parametrize("code, lines, status", [
    (255, ["ssh: connect to host 10.1.1.1 port 22: Connection timed out"],
     "fatal error (255) -- connection timed out (client not responding)"),
    (255, ["Connection timed out during banner exchange", "Connection to 127.0.23.9 port 2222 timed out"],
     "fatal error (255) -- connection timed out (client not responding)"),
    (255, ["Timeout, server 10.1.1.1 not responding."],
     "fatal error (255) -- client not responding (ssh keepalive timeout)"),
    (30, ["rsync error: timeout in data send/receive (code 30) at io.c(201)"],
     "fatal error (30) -- timeout in data send/receive"),
])
def test_timeouts_are_not_retried(code, lines, status):
    outcome = rsync.classify(code, lines)
    assert outcome.status == status and not outcome.retry


@pytest.mark.parametrize("rsh, timeout, expected", [
    ("ssh", 600, "ssh -o ConnectTimeout=60 -o ServerAliveInterval=20 -o ServerAliveCountMax=3"),
    ("ssh -p 2222", 6, "ssh -o ConnectTimeout=6 -o ServerAliveInterval=2 -o ServerAliveCountMax=3 -p 2222"),
    ("/usr/bin/ssh -o ConnectTimeout=5", 0,
     "/usr/bin/ssh -o ServerAliveInterval=20 -o ServerAliveCountMax=3 -o ConnectTimeout=5"),
    ("ssh -oconnecttimeout=5 -o ServerAliveInterval=9 -o ServerAliveCountMax=2", 30,
     "ssh -oconnecttimeout=5 -o ServerAliveInterval=9 -o ServerAliveCountMax=2"),
    ("rsh -l backup", 30, "rsh -l backup"),
])
def test_ssh_rsh_gets_bounding_options_it_does_not_set(rsh, timeout, expected):
    assert rsync.bounded_rsh(rsh, timeout) == expected


def test_error_collector_keeps_fatal_lines_past_the_limit(monkeypatch):
    import io

    monkeypatch.setattr(rsync, "MAX_ERROR_LINES", 3)
    data = b"".join(b"rsync: [sender] send_files failed to open \"/x%d\": Permission denied (13)\n" % i
                    for i in range(10))
    data += b'rsync: [receiver] write failed on "/b": No space left on device (28)\n'
    collector = rsync.ErrorCollector(io.BytesIO(data))
    collector.run()
    lines = collector.result()
    assert len(lines) == 5 and lines[-1] == "dervish: 7 more lines of rsync's error output not kept"
    assert rsync.classify(11, lines).message == rsync.FILESYSTEM_FULL


def test_help_documents_the_ssh_bound_and_that_timeouts_are_fatal(capsys):
    from dervish_engine import cli

    with pytest.raises(SystemExit):
        cli.main(["image", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("-o ConnectTimeout=T -o ServerAliveInterval=T/3 -o ServerAliveCountMax=3", "30 and 35 (timeouts)",
                 "gets SIGTERM when dervish dies"):
        assert text in out
