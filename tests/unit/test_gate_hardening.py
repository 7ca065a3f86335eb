"""The gate's hardening (issue 7): a strict config (the one definition of a valid gate.conf, also
used by the role's ``validate:``), the final outcome in the log (rrsync's refusal, the exit code),
batch files refused, and nice/ionice for the transfer. Real rsync and rrsync through a fake ssh."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.dervish.backup.plugins.module_utils import dervish_gate as gate

GATE_FILE = Path(gate.__file__)
RRSYNC = "/usr/bin/rrsync"
OPTS = "-vlogDtpre.iLsfxCIvu"


# ------------------------------------------------------------------------------- a strict config
@pytest.mark.parametrize(("text", "message"), [
    ("command rsync /bin/true\n", "c.conf line 1: command name 'rsync' is reserved (the gate's rsync check)"),
    ("command meta usr/bin/true\n", "c.conf line 1: program 'usr/bin/true' is not absolute"),
    ("command meta /usr/../bin/true\n", "c.conf line 1: program '/usr/../bin/true' contains a '..' component"),
    ("tree /etc/../root\n", "c.conf line 1: tree '/etc/../root' contains a '..' component"),
    ("tree /srv/*\n", "c.conf line 1: tree '/srv/*' contains a wildcard or brace"),
    ("tree /srv/{a,b}\n", "c.conf line 1: tree '/srv/{a,b}' contains a wildcard or brace"),
    ("command m /bin/true\ncommand m /bin/true\n", "c.conf line 2: command 'm' is defined twice"),
    ("command m /bin/true\narg m 'a\tb'\n", "c.conf line 2: argument 'a\\tb' contains control characters"),
    ("nice 20\n", "c.conf line 1: expected: nice 0..19"),
    ("nice -1\n", "c.conf line 1: expected: nice 0..19"),
    ("nice x\n", "c.conf line 1: expected: nice 0..19"),
    ("ionice realtime 0\n", "c.conf line 1: expected: ionice none | idle | best-effort [0..7]"),
    ("ionice best-effort 8\n", "c.conf line 1: expected: ionice none | idle | best-effort [0..7]"),
    ("ionice idle 3\n", "c.conf line 1: expected: ionice none | idle | best-effort [0..7]"),
])
def test_strict_config_errors(text: str, message: str) -> None:
    with pytest.raises(gate.GateConfigError) as err:
        gate.parse_config(text, "c.conf")
    assert str(err.value) == message


def test_nice_and_ionice_are_read() -> None:
    config = gate.parse_config("tree /\nnice 10\nionice best-effort 7\n", "c")
    assert (config.nice, config.ionice) == (10, ("best-effort", 7))
    assert gate.parse_config("ionice idle\n", "c").ionice == ("idle", None)
    assert gate.parse_config("ionice none\n", "c").ionice is None
    default = gate.parse_config("", "c")
    assert (default.nice, default.ionice) == (0, None)


def test_nice_and_ionice_wrap_rsync_only() -> None:
    config = gate.parse_config("tree /srv\nnice 10\nionice idle\ncommand m /bin/true\n", "c")
    rsync = gate.decide(config, f"rsync --server --sender {OPTS} . /srv/x")
    assert rsync.argv == ("/usr/bin/ionice", "-c", "3", "/usr/bin/nice", "-n", "10", RRSYNC, "-ro", "/srv")
    assert gate.decide(config, "m").argv == ("/bin/true",)
    be = gate.parse_config("tree /srv\nionice best-effort 7\n", "c")
    assert gate.decide(be, f"rsync --server --sender {OPTS} . /srv/x").argv == (
        "/usr/bin/ionice", "-c", "2", "-n", "7", RRSYNC, "-ro", "/srv")


@pytest.mark.parametrize("option", [
    "--only-write-batch=/root/.bashrc", "--write-batch=/tmp/b", "--read-batch=/tmp/b", "--daemon=x", "--daemon",
])
def test_batch_files_and_daemon_are_refused(option: str) -> None:
    config = gate.parse_config("tree /srv\n", "c")
    decision = gate.decide(config, f"rsync --server --sender {OPTS} {option} . /srv/x")
    assert not decision.allowed
    assert option.split("=")[0] in decision.reason


# ------------------------------------------------------------------------------- --check-config
def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    conf = tmp_path / "gate.conf"
    conf.write_text("tree /srv\ncommand m /bin/true\n")
    err = io.StringIO()
    assert gate.main(["--check-config", str(conf)], {}, stderr=err, fallback_log=None, fallback_syslog=False) == 0
    assert err.getvalue() == ""


def test_check_config_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "gate.conf"
    conf.write_text("tree /srv\ncommand rsync /usr/bin/rsync\n")
    err = io.StringIO()
    log = tmp_path / "gate.log"
    code = gate.main(["--check-config", str(conf)], {}, stderr=err, fallback_log=str(log), fallback_syslog=False)
    assert code == 1
    reason = "command name 'rsync' is reserved (the gate's rsync check)"
    assert err.getvalue() == f"dervish-gate: {conf} line 2: {reason}\n"
    assert not log.exists()  # a check is not a connection: nothing logged


def test_check_config_of_a_missing_file(tmp_path: Path) -> None:
    err = io.StringIO()
    assert gate.main(["--check-config", str(tmp_path / "none")], {}, stderr=err, fallback_log=None,
                     fallback_syslog=False) == 1
    assert "cannot read gate config" in err.getvalue()


# ------------------------------------------------------------ the final outcome, for real
@pytest.fixture
def client(tmp_path: Path):
    if not (shutil.which("rsync") and os.access(RRSYNC, os.X_OK)):
        pytest.skip("needs rsync and rrsync")
    data = tmp_path / "srv"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    fail = tmp_path / "fail"
    fail.write_text("#!/bin/sh\necho 'dump failed' >&2\nexit 3\n")
    fail.chmod(0o755)
    log = tmp_path / "gate.log"
    conf = tmp_path / "gate.conf"
    conf.write_text(f"tree {data}\ncommand dump {fail}\nlog {log}\nsyslog off\n")
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(
        "#!/bin/sh\nshift\n"
        f'SSH_ORIGINAL_COMMAND="$*" SSH_CLIENT="127.0.12.1 40000 22" exec {sys.executable} {GATE_FILE} '
        f"--config {conf}\n"
    )
    fake_ssh.chmod(0o755)
    return tmp_path, data, log, fake_ssh


def rsync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rsync", *args], capture_output=True, text=True, timeout=60, check=False)


def log_lines(log: Path) -> list:
    return log.read_text().splitlines()


@pytest.mark.parametrize(("options", "refusal"), [
    (["--remove-source-files"], "option --remove-source-files has been disabled on this server."),
    (["-L"], "option -L has been disabled on this server."),
    (["-M--daemon=x"], None),  # the gate itself refuses it now
])
def test_what_rrsync_refuses_is_logged_as_refused(client, options, refusal) -> None:
    tmp_path, data, log, fake_ssh = client
    result = rsync("-a", *options, "-e", str(fake_ssh), f"client:{data}/", f"{tmp_path}/copy/")
    assert result.returncode != 0
    assert (data / "a.txt").exists()
    lines = log_lines(log)
    assert len(lines) == 1, lines
    assert " REFUSE client=127.0.12.1 " in lines[0]
    assert "ALLOW" not in lines[0]
    if refusal:
        assert f'reason="rrsync refused: {refusal}" exit=1 ' in lines[0]


def test_only_write_batch_is_refused_and_writes_nothing(client) -> None:
    tmp_path, data, log, fake_ssh = client
    batch = tmp_path / "planted-batch"
    result = rsync("-a", f"-M--only-write-batch={batch}", "-e", str(fake_ssh), f"client:{data}/", f"{tmp_path}/copy/")
    assert result.returncode != 0
    assert "dervish-gate: refused: --only-write-batch is not allowed" in result.stderr
    assert not batch.exists()
    assert " REFUSE " in log_lines(log)[0]


def test_a_good_pull_logs_allow_with_exit_0_after_it_ends(client) -> None:
    tmp_path, data, log, fake_ssh = client
    result = rsync("-a", "-e", str(fake_ssh), f"client:{data}/", f"{tmp_path}/copy/")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy" / "a.txt").read_text() == "alpha\n"
    (line,) = log_lines(log)
    assert f' ALLOW client=127.0.12.1 reason="rsync read under tree {data}" exit=0 command="rsync --server' in line


def test_a_failing_command_logs_fail_with_its_exit_and_error(client) -> None:
    _tmp_path, _data, log, fake_ssh = client
    result = subprocess.run([str(fake_ssh), "client", "dump"], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 3
    assert result.stderr == "dump failed\n"  # the program's stderr still reaches the server
    (line,) = log_lines(log)
    assert ' FAIL client=127.0.12.1 reason="command dump: dump failed" exit=3 command="dump"' in line


def test_the_statement_checks_are_public_for_the_inventory_check() -> None:
    assert gate.check_tree("/srv//data/") == "/srv/data"
    with pytest.raises(ValueError, match="contains a '..' component"):
        gate.check_tree("/etc/../root")
    with pytest.raises(ValueError, match="command name 'rsync' is reserved"):
        gate.check_command("rsync", "/usr/bin/rsync")
    with pytest.raises(ValueError, match="program 'bin/dump' is not absolute"):
        gate.check_command("dump", "bin/dump")
    gate.check_command("dervish-pre-client-laptop1-home", "/usr/local/sbin/db-dump")
