"""dervish-gate with real sshd in the lab: the backup server's key on laptop1 is bound to the gate
through from=/restrict/command=, and ssh/rsync run ON the backup host (and, for from=, on laptop2)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]  # the module takes ~20 s (lab start, ~60 ssh runs)

GATE_SOURCE = Path(__file__).resolve().parents[3] / "plugins" / "module_utils" / "dervish_gate.py"
CLIENT = "laptop1"
OTHER = "laptop2"
KEY = "/root/.ssh/gate_test_key"
KNOWN = "/root/.ssh/gate_test_known_hosts"
GATE = "/usr/local/sbin/dervish-gate"
CONF = "/etc/dervish/gate-test.conf"
META = "/usr/local/sbin/dervish-metadata-test"
AUTH = "/root/.ssh/authorized_keys2"
LOG = "/var/log/dervish-gate.log"
SAVED = ".dervish-gate-test-saved"
SSH = f"ssh -i {KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile={KNOWN} -o GlobalKnownHostsFile=/dev/null " \
      "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10"
RSH = shlex.quote(SSH)
DERVISH_RSYNC = "rsync -vrltH --delete -pgo -D -A -X --numeric-ids --stats --timeout=600"


@dataclass
class GateLab:
    lab: Lab
    server_ip: str
    seen: int = 0

    def on_server(self, command: str, check: bool = False):
        return self.lab.ssh(self.lab.server, command, check=check, timeout=60)

    def on_client(self, command: str, check: bool = True):
        return self.lab.ssh(CLIENT, command, check=check, timeout=60)

    def new_log(self) -> str:
        """The gate log lines written since the last call."""
        text = self.on_client(f"cat {LOG} 2>/dev/null || true").stdout
        lines = text.splitlines()
        fresh = lines[self.seen:]
        self.seen = len(lines)
        return "\n".join(fresh)


def save(host_ssh, path: str) -> str:
    """Move an existing file aside (restored at teardown); return the shell command that restores it."""
    host_ssh(f"if [ -e {path} ]; then mv {path} {path}{SAVED}; fi")
    return f"rm -rf {path}; if [ -e {path}{SAVED} ]; then mv {path}{SAVED} {path}; fi"


@pytest.fixture(scope="module")
def gate_lab(lab: Lab) -> Iterator[GateLab]:
    server = lab.server
    server_ip = lab.ip(server)
    known = (lab.dir / "known_hosts").read_text().splitlines()
    client_keys = "".join(line + "\n" for line in known if line.startswith(f"{CLIENT},"))
    assert client_keys, "the lab's known_hosts has no key for the client"

    def client(cmd: str, **kw):
        return lab.ssh(CLIENT, cmd, **kw)

    restore_client: list = []
    log_existed = etc_existed = True
    try:
        # the backup server's dedicated key, and laptop1's host key pinned from what the controller knows
        lab.ssh(server, f"rm -f {KEY} {KEY}.pub && ssh-keygen -q -t ed25519 -N '' -C dervish-backup@{server} -f {KEY}")
        lab.ssh(server, f"cat > {KNOWN}", input=client_keys)
        pubkey = lab.ssh(server, f"cat {KEY}.pub").stdout.strip()

        # the client: the gate (shebang + the module file), its config, a dummy metadata command, the key line
        log_existed = client(f"test -e {LOG}", check=False).returncode == 0
        etc_existed = client("test -d /etc/dervish", check=False).returncode == 0
        for path in (GATE, AUTH, CONF, META, "/srv/data"):
            restore_client.append(save(client, path))
        client(f"install -m 755 /dev/stdin {GATE}", input="#!/usr/bin/python3\n" + GATE_SOURCE.read_text())
        client(f"mkdir -p /etc/dervish && cat > {CONF}", input=(
            "# written by test_gate_lab\n"
            "tree /srv/data\n"
            f"command dervish-metadata {META}\n"
            "arg dervish-metadata --json\n"
        ))
        client(f"install -m 755 /dev/stdin {META}", input='#!/bin/sh\necho "metadata from $(hostname) $*"\n')
        line = f'from="{server_ip}",restrict,command="{GATE} --config {CONF}" {pubkey}\n'
        client(f"install -m 600 /dev/stdin {AUTH}", input=line)
        client("mkdir -p /srv/data/sub && echo alpha > /srv/data/a.txt && echo beta > /srv/data/sub/b.txt"
               " && ln -f /srv/data/a.txt /srv/data/hard && chmod 640 /srv/data/sub/b.txt")
        gl = GateLab(lab, server_ip)
        gl.new_log()
        yield gl
    finally:
        lab.ssh(server, f"rm -rf {KEY} {KEY}.pub {KNOWN} /tmp/gate-test", check=False)
        lab.ssh(OTHER, f"rm -f {KEY} {KNOWN}", check=False)
        cleanup = list(restore_client)
        if not etc_existed:
            cleanup.append("rmdir /etc/dervish")
        if not log_existed:
            cleanup.append(f"rm -f {LOG}")
        client("; ".join(cleanup), check=False)


def test_pull_of_the_tree_copies_the_files(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(
        f"mkdir -p /tmp/gate-test && rsync -a -e {RSH} {CLIENT}:/srv/data/ /tmp/gate-test/copy/")
    assert result.returncode == 0, result.stderr
    listing = gate_lab.on_server("cd /tmp/gate-test/copy && find . -type f | sort && cat a.txt sub/b.txt"
                                 " && stat -c %a sub/b.txt", check=True).stdout.split()
    assert listing == ["./a.txt", "./hard", "./sub/b.txt", "alpha", "beta", "640"]
    log = gate_lab.new_log()
    assert f'ALLOW client={gate_lab.server_ip} reason="rsync read under tree /srv/data"' in log
    assert "command=\"rsync --server --sender" in log


def test_dervish_rsync_options_with_link_dest_pass_the_gate(gate_lab: GateLab) -> None:
    gate_lab.on_server(f"mkdir -p /tmp/gate-test/ref && rsync -a -e {RSH} {CLIENT}:/srv/data/ /tmp/gate-test/ref/",
                       check=True)
    result = gate_lab.on_server(
        f"mkdir -p /tmp/gate-test/image && {DERVISH_RSYNC} -e {RSH} --link-dest=/tmp/gate-test/ref "
        f"{CLIENT}:/srv/data/ /tmp/gate-test/image/tree/"
    )
    assert result.returncode == 0, result.stderr
    assert "Number of files:" in result.stdout
    # unchanged files are hard links into the reference image, as dervish relies on
    inodes = gate_lab.on_server("stat -c %i /tmp/gate-test/ref/a.txt /tmp/gate-test/image/tree/a.txt",
                                check=True).stdout.split()
    assert inodes[0] == inodes[1]
    assert "ALLOW" in gate_lab.new_log()


def test_pull_outside_the_trees_is_refused_and_logged(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(f"rsync -a -e {RSH} {CLIENT}:/etc/ /tmp/gate-test/etc/")
    assert result.returncode != 0
    assert "dervish-gate: refused: path '/etc/' is outside the configured trees" in result.stderr
    assert gate_lab.on_server("test -e /tmp/gate-test/etc/passwd").returncode != 0
    log = gate_lab.new_log()
    assert f"REFUSE client={gate_lab.server_ip} reason=\"path '/etc/' is outside the configured trees\"" in log
    assert "/etc/" in log


def test_push_is_refused_and_writes_nothing(gate_lab: GateLab) -> None:
    result = gate_lab.on_server("mkdir -p /tmp/gate-test && echo evil > /tmp/gate-test/gate-push && "
                                f"rsync -a -e {RSH} /tmp/gate-test/gate-push {CLIENT}:/srv/data/")
    assert result.returncode != 0
    assert "writing is not allowed" in result.stderr
    assert gate_lab.on_client("test -e /srv/data/gate-push", check=False).returncode == 1
    assert "REFUSE" in gate_lab.new_log()


@pytest.mark.parametrize(("command", "reason"), [
    ("id", "command 'id' is not allowed"),
    ("sh -c id", "command 'sh' is not allowed"),
    ("'sh -c id'", "command 'sh -c id' is not allowed"),
    ("id; dervish-metadata", "command 'id;' is not allowed"),
    ("dervish-metadata; id", "command 'dervish-metadata;' is not allowed"),
    ("dervish-metadata --json id", "argument 'id' is not allowed for dervish-metadata"),
    ("rsync --server --sender -s", "secluded args"),
    ("rsync --server --sender -logDtpre.iLsfxCIvu . /srv/data/../../etc/",
     "path '/srv/data/../../etc/' contains a '..' component"),
    ("scp -f /srv/data/a.txt", "command 'scp' is not allowed"),
])
def test_commands_are_refused(gate_lab: GateLab, command: str, reason: str) -> None:
    """``command`` is SSH_ORIGINAL_COMMAND exactly (one ssh argument, quoted for the backup's shell)."""
    result = gate_lab.on_server(f"{SSH} {CLIENT} {shlex.quote(command)}")
    assert result.returncode == 1, result
    assert "uid=" not in result.stdout
    assert f"dervish-gate: refused: {reason}" in result.stderr
    assert f"REFUSE client={gate_lab.server_ip}" in gate_lab.new_log()


def test_sftp_is_refused(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(f"echo 'ls /srv/data' | sftp -b - {' '.join(SSH.split()[1:])} {CLIENT}")
    assert result.returncode != 0
    assert "a.txt" not in result.stdout
    assert "is not allowed" in gate_lab.new_log()


def test_interactive_login_is_refused(gate_lab: GateLab) -> None:
    # -tt: restrict allows no pty, and a forced tty that cannot be allocated ends the session
    forced_tty = gate_lab.on_server(f"echo id | {SSH} -tt {CLIENT}")
    assert forced_tty.returncode != 0, forced_tty
    assert "PTY allocation request failed" in forced_tty.stderr
    assert "uid=" not in forced_tty.stdout
    # no pty: the login shell request reaches the gate without a command, which refuses it
    shell = gate_lab.on_server(f"echo id | {SSH} -T {CLIENT}")
    assert shell.returncode == 1, shell
    assert "uid=" not in shell.stdout
    assert shell.stderr == "dervish-gate: refused: interactive login is not allowed (no command given)\n"
    assert 'reason="interactive login is not allowed (no command given)" command="(none)"' in gate_lab.new_log()


def test_metadata_command_runs(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(f"{SSH} {CLIENT} dervish-metadata --json", check=True)
    assert result.stdout == f"metadata from {CLIENT} --json\n"
    denied = gate_lab.on_server(f"{SSH} {CLIENT} dervish-metadata --everything")
    assert denied.returncode == 1
    assert "argument '--everything' is not allowed for dervish-metadata" in denied.stderr
    log = gate_lab.new_log()
    assert 'ALLOW client=' in log and 'reason="command dervish-metadata"' in log


def test_the_key_from_another_address_is_rejected_by_sshd(gate_lab: GateLab) -> None:
    lab = gate_lab.lab
    key = lab.ssh(lab.server, f"cat {KEY}", check=True).stdout
    known = lab.ssh(lab.server, f"cat {KNOWN}", check=True).stdout
    lab.ssh(OTHER, f"install -m 600 /dev/stdin {KEY}", input=key)
    lab.ssh(OTHER, f"cat > {KNOWN}", input=known)
    result = lab.ssh(OTHER, f"{SSH} {CLIENT} dervish-metadata", check=False, timeout=60)
    assert result.returncode == 255, result
    assert "Permission denied" in result.stderr
    assert "metadata from" not in result.stdout
    assert gate_lab.new_log() == ""  # sshd refused the key: the gate never ran


@pytest.mark.parametrize(("option", "refusal"), [
    ("--remove-source-files", "option --remove-source-files has been disabled on this server."),
    ("--copy-links", "option -L has been disabled on this server."),
])
def test_what_rrsync_refuses_is_logged_as_refused(gate_lab: GateLab, option: str, refusal: str) -> None:
    result = gate_lab.on_server(
        f"mkdir -p /tmp/gate-test && rsync -a {option} -e {RSH} {CLIENT}:/srv/data/ /tmp/gate-test/refused/")
    assert result.returncode != 0
    assert refusal in result.stderr  # rrsync's own message still reaches the server
    assert gate_lab.on_client("cat /srv/data/a.txt").stdout == "alpha\n"
    log = gate_lab.new_log()
    assert f'REFUSE client={gate_lab.server_ip} reason="rrsync refused: {refusal}" exit=1 ' in log
    assert "ALLOW" not in log


def test_rsync_daemon_through_remote_option_is_refused_by_the_gate(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(f"rsync -a -M--daemon=x -e {RSH} {CLIENT}:/srv/data/ /tmp/gate-test/daemon/")
    assert result.returncode != 0
    assert "dervish-gate: refused: rsync --daemon is not allowed" in result.stderr
    assert "REFUSE" in gate_lab.new_log()


def test_only_write_batch_is_refused_and_writes_nothing(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(
        f"mkdir -p /tmp/gate-test && rsync -a -M--only-write-batch=/root/gate-test-batch -e {RSH} "
        f"{CLIENT}:/srv/data/ /tmp/gate-test/batch/")
    assert result.returncode != 0
    assert "dervish-gate: refused: --only-write-batch is not allowed" in result.stderr
    assert gate_lab.on_client("test -e /root/gate-test-batch", check=False).returncode == 1
    assert f'REFUSE client={gate_lab.server_ip} reason="--only-write-batch is not allowed' in gate_lab.new_log()


def test_a_pull_is_logged_once_when_it_has_ended_with_its_exit(gate_lab: GateLab) -> None:
    result = gate_lab.on_server(
        f"mkdir -p /tmp/gate-test && rsync -a -e {RSH} {CLIENT}:/srv/data/ /tmp/gate-test/ended/")
    assert result.returncode == 0, result.stderr
    log = gate_lab.new_log().splitlines()
    assert len(log) == 1
    assert 'ALLOW client=' in log[0] and 'reason="rsync read under tree /srv/data" exit=0 ' in log[0]
