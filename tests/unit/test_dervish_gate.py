"""Unit tests for plugins/module_utils/dervish_gate.py: config, decision table, logging, and real
rsync pulls through the gate and Debian's rrsync (a local fake ssh stands in for sshd)."""

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
DERVISH_OPTS = "-vlHogDtpAXre.iLsfxCIvu --timeout=600 --numeric-ids"

CONFIG_TEXT = """\
# written by dervish.backup.backup_client
tree /srv/data
tree /home   # trailing comment
command dervish-metadata /usr/local/sbin/dervish-metadata
arg dervish-metadata --json --brief
"""


@pytest.fixture
def config() -> gate.GateConfig:
    return gate.parse_config(CONFIG_TEXT, "/etc/dervish/gate.conf")


# ------------------------------------------------------------------------------------------- config
def test_config_example_parses(config: gate.GateConfig) -> None:
    assert config.trees == ("/srv/data", "/home")
    assert dict(config.commands) == {"dervish-metadata": "/usr/local/sbin/dervish-metadata"}
    assert config.command_args["dervish-metadata"] == frozenset({"--json", "--brief"})
    assert config.rrsync == RRSYNC
    assert config.log_file == "/var/log/dervish-gate.log"
    assert config.syslog is True


def test_config_normalises_trees_and_reads_options() -> None:
    config = gate.parse_config(
        "tree /srv//data/./x/\ntree '/with space'\ntree /\nrrsync /opt/rrsync\nlog off\nsyslog off\n", "c"
    )
    assert config.trees == ("/srv/data/x", "/with space", "/")
    assert (config.rrsync, config.log_file, config.syslog) == ("/opt/rrsync", None, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tree /srv\nfrobnicate yes\n", "c.conf line 2: unknown keyword 'frobnicate'"),
        ("tree srv/data\n", "c.conf line 1: tree 'srv/data' is not absolute"),
        ("tree /srv/../etc\n", "c.conf line 1: tree '/srv/../etc' contains a '..' component"),
        ("tree\n", "c.conf line 1: expected: tree PATH"),
        ("tree /a /b\n", "c.conf line 1: expected: tree PATH"),
        ("tree '/srv\n", "c.conf line 1: No closing quotation"),
        ("command meta\n", "c.conf line 1: expected: command NAME /absolute/program"),
        ("command ../meta /bin/true\n",
         "c.conf line 1: bad command name '../meta' (letters, digits, '.', '_', '+', '-')"),
        ("command rsync /bin/true\n", "c.conf line 1: command name 'rsync' is reserved (the gate's rsync check)"),
        ("command meta bin/true\n", "c.conf line 1: program 'bin/true' is not absolute"),
        ("command m /bin/true\ncommand m /bin/false\n", "c.conf line 2: command 'm' is defined twice"),
        ("\n\narg meta --json\n", "c.conf line 3: arg for undefined command 'meta'"),
        ("command m /bin/true\narg m\n", "c.conf line 2: expected: arg NAME VALUE..."),
        ("rrsync rrsync\n", "c.conf line 1: rrsync path 'rrsync' is not absolute"),
        ("log var/log/x\n", "c.conf line 1: log path 'var/log/x' is not absolute"),
        ("syslog maybe\n", "c.conf line 1: expected: syslog on|off"),
    ],
)
def test_config_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(gate.GateConfigError) as err:
        gate.parse_config(text, "c.conf")
    assert str(err.value) == message


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(gate.GateConfigError, match=r"cannot read gate config .*/nope\.conf: No such file"):
        gate.load_config(str(tmp_path / "nope.conf"))


def test_writable_config_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "gate.conf"
    conf.write_text("tree /\n")
    conf.chmod(0o666)
    with pytest.raises(gate.GateConfigError, match=r"gate.conf is writable by group or others \(mode 0666\)"):
        gate.load_config(str(conf))
    conf.chmod(0o640)
    assert gate.load_config(str(conf)).trees == ("/",)


def test_config_path_precedence() -> None:
    env = {"DERVISH_GATE_CONFIG": "/env.conf"}
    assert gate.config_path([], {}) == "/etc/dervish/gate.conf"
    assert gate.config_path([], env) == "/env.conf"
    assert gate.config_path(["--config", "/arg.conf"], env) == "/arg.conf"
    assert gate.config_path(["--config=/arg.conf"], env) == "/arg.conf"
    with pytest.raises(gate.GateConfigError, match="unexpected gate argument '-x'"):
        gate.config_path(["-x"], env)
    with pytest.raises(gate.GateConfigError, match="unexpected gate argument '--config'"):
        gate.config_path(["--config"], env)


# ------------------------------------------------------------------------------------ decision table
ALLOWED = [
    # (SSH_ORIGINAL_COMMAND, rrsync dir or program, command handed to rrsync or argv tail)
    (f"rsync --server --sender {OPTS} . /srv/data/", "/srv/data", f"rsync --server --sender {OPTS} . /"),
    (f"rsync --server --sender {DERVISH_OPTS} . /srv/data/", "/srv/data",
     f"rsync --server --sender {DERVISH_OPTS} . /"),
    (f"rsync --server --sender {OPTS} . /srv/data/sub", "/srv/data", f"rsync --server --sender {OPTS} . /sub"),
    (f"rsync --server --sender {OPTS} . /srv/data/sub/", "/srv/data", f"rsync --server --sender {OPTS} . /sub/"),
    (f"rsync --server --sender {OPTS} . /srv/data/.", "/srv/data", f"rsync --server --sender {OPTS} . /."),
    (f"rsync --server --sender {OPTS} . /srv//data/./sub", "/srv/data", f"rsync --server --sender {OPTS} . /sub"),
    # rsync >= 3.2.4 backslash-escapes; quotes are read like a shell would; both re-spelt for rrsync
    (f"rsync --server --sender {OPTS} . /srv/data/my\\ dir/", "/srv/data",
     f"rsync --server --sender {OPTS} . /my\\ dir/"),
    (f"rsync --server --sender {OPTS} . '/srv/data/it'\\''s/'", "/srv/data",
     f"rsync --server --sender {OPTS} . /it\\'s/"),
    (f"rsync --server --sender {OPTS} . /srv/data/\\$\\(id\\)", "/srv/data",
     f"rsync --server --sender {OPTS} . /\\$\\(id\\)"),
    (f"rsync --server --sender {OPTS} . /srv/data/a /srv/data/b/", "/srv/data",
     f"rsync --server --sender {OPTS} . /a /b/"),
    (f"rsync --server --sender {OPTS} . /home/alice/", "/home", f"rsync --server --sender {OPTS} . /alice/"),
    (f"rsync --server --sender {OPTS} --log-format=%n\\ %L . /home/", "/home",
     f"rsync --server --sender {OPTS} --log-format=%n\\ %L . /"),
    # the capability blob's "s" is not the -s option
    ("rsync --server --sender -e.LsfxCIvu . /srv/data/", "/srv/data", "rsync --server --sender -e.LsfxCIvu . /"),
]


@pytest.mark.parametrize(("command", "target", "handed"), ALLOWED)
def test_allowed(config: gate.GateConfig, command: str, target: str, handed: str) -> None:
    decision = gate.decide(config, command)
    assert decision.allowed, decision.reason
    assert decision.kind == "rsync"
    assert decision.argv == (RRSYNC, "-ro", target)
    assert decision.original_command == handed


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("dervish-metadata", ("/usr/local/sbin/dervish-metadata",)),
        ("dervish-metadata --json", ("/usr/local/sbin/dervish-metadata", "--json")),
        ("dervish-metadata --brief --json", ("/usr/local/sbin/dervish-metadata", "--brief", "--json")),
    ],
)
def test_allowed_commands(config: gate.GateConfig, command: str, argv: tuple) -> None:
    decision = gate.decide(config, command)
    assert (decision.allowed, decision.kind, decision.argv, decision.original_command) == (
        True, "command", argv, None)


def test_tree_root_keeps_paths_and_allows_relative() -> None:
    config = gate.parse_config("tree /\ntree /srv/data\n", "c")
    command = f"rsync --server --sender -R{OPTS[1:]} . /etc/ /srv/data/x\\ y"
    decision = gate.decide(config, command)
    assert decision.allowed, decision.reason
    assert decision.argv == (RRSYNC, "-ro", "/")
    assert decision.original_command == command


def test_shallowest_covering_tree_is_used() -> None:
    config = gate.parse_config("tree /srv/data\ntree /srv\n", "c")
    decision = gate.decide(config, f"rsync --server --sender {OPTS} . /srv/data/x/")
    assert decision.argv == (RRSYNC, "-ro", "/srv")
    assert decision.original_command == f"rsync --server --sender {OPTS} . /data/x/"


REFUSED = [
    (None, "interactive login is not allowed"),
    ("", "interactive login is not allowed"),
    ("   ", "interactive login is not allowed"),
    ("id", "command 'id' is not allowed"),
    ("sh -c id", "command 'sh' is not allowed"),
    ("/bin/bash -i", "command '/bin/bash' is not allowed"),
    ("scp -f /srv/data/x", "command 'scp' is not allowed"),
    ("sftp", "command 'sftp' is not allowed"),
    ("internal-sftp", "command 'internal-sftp' is not allowed"),
    ("/usr/lib/openssh/sftp-server", "is not allowed"),
    ("/usr/local/sbin/dervish-metadata", "is not allowed"),
    ("/usr/bin/rsync --server --sender -r . /srv/data/", "is not allowed"),
    ("true", "command 'true' is not allowed"),
    ("rsync", "only 'rsync --server --sender'"),
    ("rsync --version", "only 'rsync --server --sender'"),
    ("rsync -av /srv/data/ /tmp/x", "only 'rsync --server --sender'"),
    (f"rsync --server {OPTS} . /srv/data/", "writing is not allowed"),
    (f"rsync --server {OPTS} --sender . /srv/data/", "writing is not allowed"),
    ("rsync --server --daemon .", "rsync --daemon is not allowed"),
    ("rsync --server --sender -slogDtpre.iLsfxCIvu", "secluded args"),
    ("rsync --server --sender -s . /srv/data/", "secluded args"),
    (f"rsync --server --sender --secluded-args {OPTS} . /srv/data/", "--secluded-args is not allowed"),
    (f"rsync --server --sender --protect-args {OPTS} . /srv/data/", "--protect-args is not allowed"),
    (f"rsync --server --sender {OPTS} . /etc/", "path '/etc/' is outside the configured trees"),
    (f"rsync --server --sender {OPTS} . /", "path '/' is outside the configured trees"),
    (f"rsync --server --sender {OPTS} . /srv/", "outside the configured trees"),
    (f"rsync --server --sender {OPTS} . /srv/database/", "outside the configured trees"),
    (f"rsync --server --sender {OPTS} . /srv/data/../../etc/", "contains a '..' component"),
    (f"rsync --server --sender {OPTS} . /srv/data/..", "contains a '..' component"),
    (f"rsync --server --sender {OPTS} . srv/data/", "is not absolute"),
    (f"rsync --server --sender {OPTS} . ~/x", "is not absolute"),
    (f"rsync --server --sender {OPTS} . ''", "path is empty"),
    (f"rsync --server --sender {OPTS} .", "no path given"),
    (f"rsync --server --sender {OPTS} . /srv/data/*", "wildcards and braces"),
    (f"rsync --server --sender {OPTS} . /srv/data/x?", "wildcards and braces"),
    (f"rsync --server --sender {OPTS} . /srv/data/[ab]", "wildcards and braces"),
    (f"rsync --server --sender {OPTS} . /srv/data/{{..,x}}", "wildcards and braces"),
    (f"rsync --server --sender {OPTS} . /srv/data", "name the tree with a trailing slash (/srv/data/)"),
    (f"rsync --server --sender {OPTS} . /srv/data/ /home/alice/", "different trees"),
    (f"rsync --server --sender -R{OPTS[1:]} . /srv/data/x", "--relative is only allowed under tree /"),
    (f"rsync --server --sender --relative {OPTS} . /srv/data/x", "--relative is only allowed"),
    (f"rsync --server --sender {OPTS} . /srv/data/\nid", "control characters"),
    (f"rsync --server --sender {OPTS} . /srv/data/\x1b[2J", "control characters"),
    (f"rsync --server --sender {OPTS} . '/srv/data/", "cannot split the command"),
    (f"rsync --server --sender {OPTS} . /srv/data/\\", "cannot split the command"),
    (f"rsync --server --sender {OPTS} /srv/data/", "no '.' argument"),
    (f"rsync --server --sender {OPTS} x . /srv/data/", "unexpected argument 'x' before '.'"),
    (f"rsync --server --sender {OPTS} -- . /srv/data/", "unexpected '--'"),
    (f"rsync --server --sender {OPTS} - . /srv/data/", "unexpected argument '-'"),
    ("rsync --server --sender -r\\ x . /srv/data/", "unexpected short option"),
    ("rsync --server --sender '--stats x' . /srv/data/", "unexpected characters in option"),
    ("dervish-metadata --evil", "argument '--evil' is not allowed for dervish-metadata"),
    ("dervish-metadata --json; id", "argument '--json;' is not allowed"),
    ("dervish-metadata && id", "argument '&&' is not allowed"),
    ("dervish-metadata;id", "command 'dervish-metadata;id' is not allowed"),
]


@pytest.mark.parametrize(("command", "reason"), REFUSED)
def test_refused(config: gate.GateConfig, command, reason: str) -> None:
    decision = gate.decide(config, command)
    assert not decision.allowed
    assert reason in decision.reason
    assert decision.argv == ()


def test_undecodable_bytes_survive_the_respelling(config: gate.GateConfig) -> None:
    """A non-UTF-8 file name (as os.environ decodes it) reaches rrsync byte for byte."""
    name = b"/srv/data/caf\xe9/".decode("utf-8", "surrogateescape")
    decision = gate.decide(config, f"rsync --server --sender {OPTS} . {name}")
    assert decision.allowed
    spelt = decision.original_command.encode("utf-8", "surrogateescape")
    assert spelt == f"rsync --server --sender {OPTS} . /caf\\".encode() + b"\xe9/"
    assert gate.rrsync_words(decision.original_command)[-1] == "/caf" + b"\xe9".decode("utf-8", "surrogateescape") + "/"


def test_empty_config_allows_nothing() -> None:
    config = gate.parse_config("# nothing\n", "c")
    for command, _target, _handed in ALLOWED:
        assert not gate.decide(config, command).allowed


@pytest.mark.parametrize(
    "word", ["plain", "a b", "it's", 'say "hi"', "back\\slash", "$(id)", "`id`", "tab\tx", "ünï", "a,b=c:d@e%f+g"]
)
def test_rrsync_spelling_round_trips(word: str) -> None:
    spelt = gate.rrsync_quote(word)
    assert gate.rrsync_words(spelt) == [word]
    assert gate.rrsync_words(f"rsync {spelt} x") == ["rsync", word, "x"]


def test_rrsync_splitting_matches_the_installed_rrsync() -> None:
    """The gate's copy of rrsync's word regex must be the one rrsync itself uses."""
    if not os.path.exists(RRSYNC):
        pytest.skip("no rrsync")
    text = Path(RRSYNC).read_text()
    assert r"re.findall(r'(?:[^\s\\]+|\\.[^\s\\]*)+', command)" in text
    assert r"DE_BACKSLASH_RE = re.compile(r'\\(.)')" in text


# ------------------------------------------------------------------------------------------- logging
def test_log_message_truncates_and_escapes() -> None:
    line = gate.log_message("REFUSE", "10.0.0.1", 'bad "x"', "rm -rf /\x1b[0m" + "y" * 400)
    assert line.startswith('REFUSE client=10.0.0.1 reason="bad \\"x\\"" command="rm -rf /\\x1b[0m')
    assert line.endswith('y..."')
    assert "\x1b" not in line
    assert len(line) < 400
    assert gate.log_message("ALLOW", "", "r", None) == 'ALLOW client=- reason="r" command="(none)"'


def test_client_address() -> None:
    assert gate.client_address({"SSH_CLIENT": "127.0.12.1 40000 22"}) == "127.0.12.1"
    assert gate.client_address({}) == "-"


class Spawn:
    """Records the program the gate would run instead of running it; it "exits" 0."""

    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, argv, env, rrsync) -> gate.Outcome:
        self.calls.append((argv[0], list(argv), dict(env)))
        return gate.Outcome(0)


def run_main(tmp_path: Path, conf_text: str, command, *, argv=None, fallback_log=None):
    conf = tmp_path / "gate.conf"
    log = tmp_path / "gate.log"
    conf.write_text(conf_text.replace("LOG", str(log)))
    env = {"DERVISH_GATE_CONFIG": str(conf), "SSH_CLIENT": "127.0.12.1 41234 22", "PATH": "/usr/bin:/bin"}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    err = io.StringIO()
    spawn = Spawn()
    code = gate.main(argv or [], env, stderr=err, spawn=spawn, fallback_log=fallback_log, fallback_syslog=False)
    lines = log.read_text().splitlines() if log.exists() else []
    return code, err.getvalue(), lines, spawn.calls


def test_main_refuses_logs_and_exits_1(tmp_path: Path) -> None:
    code, err, lines, calls = run_main(tmp_path, "tree /srv/data\nlog LOG\nsyslog off\n", "sh -c id")
    assert code == 1
    assert err == "dervish-gate: refused: command 'sh' is not allowed\n"
    assert len(lines) == 1
    assert " REFUSE client=127.0.12.1 reason=\"command 'sh' is not allowed\" command=\"sh -c id\"" in lines[0]
    assert lines[0].split()[1].startswith("dervish-gate[")
    assert calls == []


def test_main_refuses_interactive_login(tmp_path: Path) -> None:
    code, err, lines, calls = run_main(tmp_path, "tree /\nlog LOG\nsyslog off\n", None)
    assert (code, calls) == (1, [])
    assert "interactive login is not allowed" in err
    assert 'command="(none)"' in lines[0]


def test_main_runs_rrsync_with_the_respelt_command(tmp_path: Path) -> None:
    if not os.access(RRSYNC, os.X_OK):
        pytest.skip("no rrsync")
    command = f"rsync --server --sender {OPTS} . /srv/data/a\\ b"
    code, err, lines, calls = run_main(tmp_path, "tree /srv/data\nlog LOG\nsyslog off\n", command)
    assert (code, err) == (0, "")
    assert len(calls) == 1
    path, argv, env = calls[0]
    assert (path, argv) == (RRSYNC, [RRSYNC, "-ro", "/srv/data"])
    assert env["SSH_ORIGINAL_COMMAND"] == f"rsync --server --sender {OPTS} . /a\\ b"
    assert env["SSH_CLIENT"] == "127.0.12.1 41234 22"
    assert 'ALLOW client=127.0.12.1 reason="rsync read under tree /srv/data" exit=0' in lines[0]


def test_main_refuses_rsync_without_rrsync(tmp_path: Path) -> None:
    conf = f"tree /srv/data\nrrsync {tmp_path}/no-rrsync\nlog LOG\nsyslog off\n"
    code, err, lines, calls = run_main(tmp_path, conf, f"rsync --server --sender {OPTS} . /srv/data/")
    assert (code, calls) == (1, [])
    assert err == (f"dervish-gate: refused: rrsync not found at {tmp_path}/no-rrsync (install rsync's rrsync); "
                   "refusing rsync without it\n")
    assert "REFUSE" in lines[0]


def test_main_runs_a_configured_command(tmp_path: Path) -> None:
    program = tmp_path / "meta"
    program.write_text("#!/bin/sh\necho meta\n")
    program.chmod(0o755)
    conf = f"command dervish-metadata {program}\narg dervish-metadata --json\nlog LOG\nsyslog off\n"
    code, err, lines, calls = run_main(tmp_path, conf, "dervish-metadata --json")
    assert (code, err) == (0, "")
    assert calls[0][:2] == (str(program), [str(program), "--json"])
    assert 'ALLOW client=127.0.12.1 reason="command dervish-metadata"' in lines[0]


def test_main_refuses_a_missing_program(tmp_path: Path) -> None:
    conf = f"command dervish-metadata {tmp_path}/gone\nlog LOG\nsyslog off\n"
    code, err, _lines, calls = run_main(tmp_path, conf, "dervish-metadata")
    assert (code, calls) == (1, [])
    assert "is missing or not executable" in err


def test_main_bad_config_refuses_everything_and_names_the_line(tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.log"
    code, err, _lines, calls = run_main(tmp_path, "tree /\nfoo bar\n", "dervish-metadata",
                                        fallback_log=str(fallback))
    assert (code, calls) == (1, [])
    assert err == f"dervish-gate: refused: config error: {tmp_path}/gate.conf line 2: unknown keyword 'foo'\n"
    assert "REFUSE" in fallback.read_text()


def test_main_missing_config_and_config_argument(tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.log"
    code, err, _lines, _calls = run_main(tmp_path, "tree /\n", "x", argv=["--config", str(tmp_path / "none")],
                                         fallback_log=str(fallback))
    assert code == 1
    assert f"cannot read gate config {tmp_path}/none: No such file or directory" in err


def test_main_start_failure_is_126(tmp_path: Path) -> None:
    program = tmp_path / "meta"
    program.write_text("not a program\n")
    program.chmod(0o755)
    conf = tmp_path / "gate.conf"
    conf.write_text(f"command m {program}\nlog off\nsyslog off\n")
    err = io.StringIO()
    env = {"DERVISH_GATE_CONFIG": str(conf), "SSH_ORIGINAL_COMMAND": "m"}
    assert gate.main([], env, stderr=err, fallback_log=None, fallback_syslog=False) == 126
    assert "cannot run" in err.getvalue()


# ------------------------------------------------------------ real rsync through the gate and rrsync
@pytest.fixture
def site(tmp_path: Path):
    """A client tree, an outside dir, a gate config and a fake ssh that runs the gate like sshd."""
    if not (shutil.which("rsync") and os.access(RRSYNC, os.X_OK)):
        pytest.skip("needs rsync and rrsync")
    data = tmp_path / "srv" / "data"
    (data / "sub dir").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub dir" / "b.txt").write_text("beta\n")
    (data / "hard").hardlink_to(data / "a.txt")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("do not copy\n")
    (data / "escape").symlink_to(outside)
    meta = tmp_path / "meta"
    meta.write_text("#!/bin/sh\necho \"metadata $*\"\n")
    meta.chmod(0o755)
    log = tmp_path / "gate.log"
    conf = tmp_path / "gate.conf"
    conf.write_text(f"tree {data}\ncommand dervish-metadata {meta}\narg dervish-metadata --json\n"
                    f"log {log}\nsyslog off\n")
    fake_ssh = tmp_path / "fake-ssh"
    # ssh joins the remote words with spaces into one command string, as sshd's SSH_ORIGINAL_COMMAND
    fake_ssh.write_text(
        "#!/bin/sh\nshift\n"
        f'SSH_ORIGINAL_COMMAND="$*" SSH_CLIENT="127.0.12.1 40000 22" exec {sys.executable} {GATE_FILE} '
        f"--config {conf}\n"
    )
    fake_ssh.chmod(0o755)
    return tmp_path, data, outside, log, fake_ssh


def rsync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rsync", *args], capture_output=True, text=True, timeout=60, check=False)


def test_real_pull_with_dervish_options(site) -> None:
    tmp_path, data, _outside, log, fake_ssh = site
    dest = tmp_path / "image" / "tree"
    ref = tmp_path / "ref"
    ref.mkdir()
    dest.parent.mkdir()
    result = rsync("-vrltH", "--delete", "-pgo", "-D", "-A", "-X", "--numeric-ids", "--stats", "--timeout=600",
                   f"--link-dest={ref}", "-e", str(fake_ssh), f"client:{data}/", f"{dest}/")
    assert result.returncode == 0, result.stderr
    assert (dest / "a.txt").read_text() == "alpha\n"
    assert (dest / "sub dir" / "b.txt").read_text() == "beta\n"
    assert (dest / "hard").stat().st_ino == (dest / "a.txt").stat().st_ino
    assert (dest / "escape").is_symlink()  # a symlink is copied as a symlink, not followed
    assert "ALLOW" in log.read_text()


def test_real_pull_of_a_subdir_with_a_space(site) -> None:
    tmp_path, data, _outside, _log, fake_ssh = site
    result = rsync("-a", "-e", str(fake_ssh), f"client:{data}/sub dir", f"{tmp_path}/copy/")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy" / "sub dir" / "b.txt").read_text() == "beta\n"


def test_real_pull_outside_the_tree_is_refused_and_logged(site) -> None:
    tmp_path, _data, outside, log, fake_ssh = site
    result = rsync("-a", "-e", str(fake_ssh), f"client:{outside}/", f"{tmp_path}/copy/")
    assert result.returncode != 0
    assert f"dervish-gate: refused: path '{outside}/' is outside the configured trees" in result.stderr
    assert not (tmp_path / "copy" / "key").exists()
    assert "REFUSE client=127.0.12.1" in log.read_text()


def test_real_symlink_escape_is_stopped_by_rrsync(site) -> None:
    tmp_path, data, _outside, _log, fake_ssh = site
    result = rsync("-a", "-e", str(fake_ssh), f"client:{data}/escape/", f"{tmp_path}/copy/")
    assert result.returncode != 0
    assert "unsafe arg" in result.stderr
    assert not (tmp_path / "copy" / "key").exists()


def test_real_push_is_refused_and_writes_nothing(site) -> None:
    tmp_path, data, _outside, _log, fake_ssh = site
    src = tmp_path / "evil"
    src.write_text("x\n")
    result = rsync("-a", "-e", str(fake_ssh), str(src), f"client:{data}/")
    assert result.returncode != 0
    assert "writing is not allowed" in result.stderr
    assert not (data / "evil").exists()


def test_real_secluded_args_are_refused(site) -> None:
    tmp_path, data, _outside, _log, fake_ssh = site
    result = rsync("-a", "-s", "-e", str(fake_ssh), f"client:{data}/", f"{tmp_path}/copy/")
    assert result.returncode != 0
    assert "secluded args" in result.stderr


def test_real_metadata_command(site) -> None:
    _tmp_path, _data, _outside, log, fake_ssh = site
    result = subprocess.run([str(fake_ssh), "client", "dervish-metadata", "--json"], capture_output=True,
                            text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (0, "metadata --json\n")
    denied = subprocess.run([str(fake_ssh), "client", "dervish-metadata", "--all"], capture_output=True,
                            text=True, timeout=30, check=False)
    assert denied.returncode == 1
    assert denied.stdout == ""
    assert "argument '--all' is not allowed" in denied.stderr
    assert log.read_text().count("\n") == 2
