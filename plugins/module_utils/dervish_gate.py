"""dervish-gate: the forced command behind the backup server's key on a client.

The backup server reads a client as root over ssh with a dedicated key that the client authorises
only through this program::

    from="<server>",restrict,command="/usr/local/sbin/dervish-gate" ssh-ed25519 AAAA... dervish-backup@<server>

sshd then runs the gate for every connection with the client's wish in ``SSH_ORIGINAL_COMMAND``.
The gate allows exactly two kinds of command and refuses everything else:

1. a read-only rsync of the configured trees: ``rsync --server --sender <options> . <path>...`` where
   every path is absolute, has no ``..`` component, no wildcard or brace and lies in (or is) one
   configured tree. Secluded/protected args (``-s``, ``--secluded-args``, ``--protect-args``) are
   refused: the paths would travel inside the protocol where the gate cannot see them. The gate then
   hands over to rsync's own restrictor ``rrsync -ro DIR`` for the option allowlist, giving it the
   command re-spelt in the form rrsync parses (so rrsync and rsync see exactly what the gate checked):

   * all paths in a tree other than ``/``: ``rrsync -ro TREE`` with the paths re-spelt relative to the
     tree (``/srv/data/sub/`` -> ``/sub/``). rrsync then also confines symlinks, ``--files-from``
     lists and filter merge files to the tree (``--confine-root``); a path that IS the tree must end
     in ``/`` (``/srv/data/``) and ``--relative`` is refused there;
   * otherwise (tree ``/`` configured): ``rrsync -ro /`` with the paths as sent.

   Without rrsync the gate refuses (it never runs rsync unchecked). Batch files
   (``--write-batch``, ``--only-write-batch``, ``--read-batch``, also sent through ``-M``) and
   ``--daemon`` are refused by the gate itself: rrsync passes ``--only-write-batch=PATH``, which
   would have the client's rsync write PATH as root.
2. a configured command (e.g. a pre-backup hook ``dervish-pre-db-dump``), by name, mapped to an
   absolute program, with no arguments or only arguments allowlisted for it; run without a shell.

The allowed program runs as the gate's child with the connection's stdin and stdout; its stderr
passes through the gate to the connection unchanged. The gate logs the verdict after the child has
exited, so the log shows the final outcome: what rrsync then refuses (``--remove-source-files``,
``-L``: its ``... error: ...`` line on stderr and exit 1) is logged as REFUSE with rrsync's reason, a
program that fails as FAIL with its exit code and last stderr line. The gate does not copy rrsync's
option allowlist (that would drift from the rrsync installed); rrsync stays the one judge of options,
and the gate reports its verdict. SIGTERM/SIGHUP/SIGINT are passed on to the child.

Config (``/etc/dervish/gate.conf``; ``--config PATH`` or env ``DERVISH_GATE_CONFIG`` choose another),
one statement a line, ``#`` starts a comment line, words split like a POSIX shell::

    tree /srv/data                     # may repeat; "tree /" allows every path
    command dervish-metadata /usr/local/sbin/dervish-metadata
    arg dervish-metadata --json        # allowlisted argument(s) for that command
    rrsync /usr/bin/rrsync             # default
    log /var/log/dervish-gate.log      # default; "log off" disables the file
    syslog on                          # default; "logger -t dervish-gate -p auth.*"
    nice 10                            # rsync's CPU niceness 0..19 (default 0: unchanged)
    ionice best-effort 7               # rsync's I/O class: none (default) | idle | best-effort [0..7]

``nice``/``ionice`` wrap only the transfer (``ionice -c ... nice -n ... rrsync ...``), so a backup
does not slow down a laptop or firewall in use; named commands run as they are.

A missing, unreadable or group/world-writable config, an unknown keyword or a bad line refuses
everything (fail closed), with a message naming the file and line. ``parse_config`` is the one
definition of a valid config: trees and programs absolute, without ``..``, wildcards or braces in
trees, command names unique and never ``rsync``. ``dervish-gate --check-config FILE`` runs it on FILE
(exit 0, or 1 with the error on stderr; nothing logged): the role's ``validate:`` and the
inventory check use it.

Every connection is logged once, when it ends: one line appended to the log file and sent to syslog,
``ALLOW`` (ran, exit 0; auth.info), ``FAIL`` (ran, exit not 0; auth.warning) or ``REFUSE`` (by the
gate or by rrsync; auth.warning), with time, client address (``SSH_CLIENT``), reason, ``exit=N`` for
a program that ran, and the command (at most 300 characters, control characters escaped).

Exit codes: the allowed program's own (rsync's, or rrsync's 1 for an option it refuses; 128+N for a
signal). The gate itself exits with 1 = refused (not allowed, bad config, rrsync or the program
missing), with a one-line reason on stderr; 126 = allowed, but the program could not be started.

Stdlib only, Python 3.9+. The role deploys this file as /usr/local/sbin/dervish-gate with a
``#!/usr/bin/python3`` line prepended.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, TextIO, Tuple

DEFAULT_CONFIG = "/etc/dervish/gate.conf"
DEFAULT_LOG = "/var/log/dervish-gate.log"
DEFAULT_RRSYNC = "/usr/bin/rrsync"
CONFIG_ENV = "DERVISH_GATE_CONFIG"
SYSLOG_TAG = "dervish-gate"

EXIT_REFUSED = 1
EXIT_EXEC_FAILED = 126

NICE = "/usr/bin/nice"
IONICE = "/usr/bin/ionice"
IONICE_CLASSES = {"idle": "3", "best-effort": "2"}

MAX_LOGGED_COMMAND = 300

SECLUDED_LONG = ("secluded-args", "protect-args")
# Options the gate refuses itself: a batch file is a file written (or read) anywhere as root, and
# rrsync lets --only-write-batch through; --daemon is never a read.
REFUSED_LONG = ("write-batch", "only-write-batch", "read-batch", "daemon")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Wildcards and braces: rrsync globs its path args and may brace-expand them (python3-braceexpand).
PATH_SPECIAL_RE = re.compile(r"[*?\[\]{}]")
# Characters that need no backslash for rrsync's word splitting; everything else is escaped.
SAFE_CHARS_RE = re.compile(r"[A-Za-z0-9_./=:,+@%-]")
# rrsync's own word splitting of SSH_ORIGINAL_COMMAND and its backslash removal (rsync >= 3.2.4 escapes
# shell-active characters in remote args with backslashes).
RRSYNC_WORD_RE = re.compile(r"(?:[^\s\\]+|\\.[^\s\\]*)+")
DE_BACKSLASH_RE = re.compile(r"\\(.)")
# A short option cluster as the rsync client sends it: letters, then maybe the capability blob
# "e<version>.<flags>" (its letters are not options: "e.iLsfxCIvu" contains an "s").
SHORT_CLUSTER_RE = re.compile(r"-([A-Za-z0-9@]*?)(e\d*\.\w*)?")
COMMAND_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
RESERVED_NAMES = ("rsync",)  # dispatched to the rsync check: a command of that name would shadow it


class GateConfigError(Exception):
    """The gate's config cannot be used; everything is refused."""


@dataclass(frozen=True)
class GateConfig:
    path: str
    trees: Tuple[str, ...] = ()
    commands: Mapping[str, str] = field(default_factory=dict)
    command_args: Mapping[str, FrozenSet[str]] = field(default_factory=dict)
    rrsync: str = DEFAULT_RRSYNC
    log_file: Optional[str] = DEFAULT_LOG
    syslog: bool = True
    nice: int = 0
    ionice: Optional[Tuple[str, Optional[int]]] = None  # (class, level) or None: unchanged


@dataclass(frozen=True)
class Decision:
    """The verdict on one command: what to run (argv) and with which SSH_ORIGINAL_COMMAND."""

    allowed: bool
    reason: str
    argv: Tuple[str, ...] = ()
    original_command: Optional[str] = None
    kind: str = ""  # "rsync" or "command" when allowed


def refuse(reason: str) -> Decision:
    return Decision(False, reason)


# --------------------------------------------------------------------------------------------- paths
def path_components(path: str) -> Optional[Tuple[str, ...]]:
    """The components of an absolute path without empty and "." ones; None if a ".." is present."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return tuple(parts)


def check_absolute_path(path: str, what: str) -> Tuple[str, ...]:
    """Components of a clean absolute path, or ValueError with a message."""
    if not path:
        raise ValueError(f"{what} is empty")
    if "\0" in path or CONTROL_RE.search(path):
        raise ValueError(f"{what} {path!r} contains control characters")
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} is not absolute")
    comps = path_components(path)
    if comps is None:
        raise ValueError(f"{what} {path!r} contains a '..' component")
    return comps


def normalise_tree(path: str) -> str:
    return "/" + "/".join(check_absolute_path(path, "tree"))


def is_below(comps: Sequence[str], tree_comps: Sequence[str]) -> bool:
    return tuple(comps[: len(tree_comps)]) == tuple(tree_comps)


# -------------------------------------------------------------------------------------------- config
# check_tree and check_command are the statements' checks; the inventory check (validate_site) calls
# them on the inventory's values, so it gives the verdict the gate gives on the file.
def check_tree(path: str) -> str:
    """The tree normalised (``/srv//data/`` -> ``/srv/data``), or ValueError naming what is wrong."""
    if PATH_SPECIAL_RE.search(path):
        raise ValueError(f"tree {path!r} contains a wildcard or brace")
    return normalise_tree(path)


def check_command(name: str, program: str) -> None:
    """ValueError unless NAME is a usable command name and PROGRAM an absolute path without ``..``."""
    if name in RESERVED_NAMES:
        raise ValueError(f"command name {name!r} is reserved (the gate's rsync check)")
    if not COMMAND_NAME_RE.fullmatch(name):
        raise ValueError(f"bad command name {name!r} (letters, digits, '.', '_', '+', '-')")
    check_absolute_path(program, "program")


def parse_config(text: str, path: str) -> GateConfig:
    """Parse the gate's config; GateConfigError names the file and line of the first problem."""
    trees: List[str] = []
    commands: Dict[str, str] = {}
    args: Dict[str, set] = {}
    arg_lines: Dict[str, int] = {}
    rrsync = DEFAULT_RRSYNC
    log_file: Optional[str] = DEFAULT_LOG
    syslog = True
    nice = 0
    ionice: Optional[Tuple[str, Optional[int]]] = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{path} line {number}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError as exc:
            raise GateConfigError(f"{where}: {exc}") from None
        if not words:
            continue
        keyword, values = words[0], words[1:]
        try:
            if keyword == "tree":
                one_value(values, "tree PATH")
                tree = check_tree(values[0])
                if tree not in trees:
                    trees.append(tree)
            elif keyword == "command":
                if len(values) != 2:
                    raise ValueError("expected: command NAME /absolute/program")
                name, program = values
                check_command(name, program)
                if name in commands:
                    raise ValueError(f"command {name!r} is defined twice")
                commands[name] = program
            elif keyword == "arg":
                if len(values) < 2:
                    raise ValueError("expected: arg NAME VALUE...")
                for value in values[1:]:
                    if CONTROL_RE.search(value):
                        raise ValueError(f"argument {value!r} contains control characters")
                args.setdefault(values[0], set()).update(values[1:])
                arg_lines.setdefault(values[0], number)
            elif keyword == "rrsync":
                one_value(values, "rrsync /absolute/path")
                check_absolute_path(values[0], "rrsync path")
                rrsync = values[0]
            elif keyword == "log":
                one_value(values, "log /absolute/path|off")
                if values[0] == "off":
                    log_file = None
                else:
                    check_absolute_path(values[0], "log path")
                    log_file = values[0]
            elif keyword == "syslog":
                one_value(values, "syslog on|off")
                if values[0] not in ("on", "off"):
                    raise ValueError("expected: syslog on|off")
                syslog = values[0] == "on"
            elif keyword == "nice":
                nice = parse_nice(values)
            elif keyword == "ionice":
                ionice = parse_ionice(values)
            else:
                raise ValueError(f"unknown keyword {keyword!r}")
        except ValueError as exc:
            raise GateConfigError(f"{where}: {exc}") from None
    for name, number in arg_lines.items():
        if name not in commands:
            raise GateConfigError(f"{path} line {number}: arg for undefined command {name!r}")
    return GateConfig(
        path=path,
        trees=tuple(trees),
        commands=dict(commands),
        command_args={name: frozenset(values) for name, values in args.items()},
        rrsync=rrsync,
        log_file=log_file,
        syslog=syslog,
        nice=nice,
        ionice=ionice,
    )


def parse_nice(values: Sequence[str]) -> int:
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) > 19:
        raise ValueError("expected: nice 0..19")
    return int(values[0])


def parse_ionice(values: Sequence[str]) -> Optional[Tuple[str, Optional[int]]]:
    usage = "expected: ionice none | idle | best-effort [0..7]"
    if not values or len(values) > 2 or values[0] not in ("none", *IONICE_CLASSES):
        raise ValueError(usage)
    if len(values) == 1:
        return None if values[0] == "none" else (values[0], None)
    if values[0] != "best-effort" or not values[1].isdigit() or int(values[1]) > 7:
        raise ValueError(usage)
    return values[0], int(values[1])


def one_value(values: Sequence[str], usage: str) -> None:
    if len(values) != 1:
        raise ValueError(f"expected: {usage}")


def load_config(path: str) -> GateConfig:
    """Read and parse the config; one that others than its owner may write is refused too."""
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GateConfigError(f"cannot read gate config {path}: {reason}") from None
    if mode & 0o022:
        raise GateConfigError(f"gate config {path} is writable by group or others (mode {mode & 0o7777:04o})")
    return parse_config(text, path)


# ----------------------------------------------------------------------------------------- splitting
def rrsync_words(command: str) -> List[str]:
    """SSH_ORIGINAL_COMMAND split the way rrsync splits it, backslashes removed."""
    return [DE_BACKSLASH_RE.sub(r"\1", word) for word in RRSYNC_WORD_RE.findall(command)]


def rrsync_quote(word: str) -> str:
    """Spell one word so that rrsync's splitting and backslash removal give it back unchanged."""
    return "".join(char if SAFE_CHARS_RE.fullmatch(char) else "\\" + char for char in word)


def rrsync_command(words: Sequence[str]) -> str:
    return " ".join(rrsync_quote(word) for word in words)


# ---------------------------------------------------------------------------------------- decisions
def decide(config: GateConfig, command: Optional[str]) -> Decision:
    """The verdict on SSH_ORIGINAL_COMMAND ``command`` (None: the client asked for a login shell)."""
    if command is None or not command.strip():
        return refuse("interactive login is not allowed (no command given)")
    if CONTROL_RE.search(command):
        return refuse("control characters in the command")
    try:
        words = shlex.split(command, posix=True)
    except ValueError as exc:
        return refuse(f"cannot split the command: {exc}")
    if not words:
        return refuse("empty command")
    if words[0] == "rsync":
        return decide_rsync(config, words)
    if words[0] in config.commands:
        return decide_command(config, words)
    return refuse(f"command {words[0][:60]!r} is not allowed")


def decide_command(config: GateConfig, words: Sequence[str]) -> Decision:
    name, args = words[0], list(words[1:])
    allowed = config.command_args.get(name, frozenset())
    for arg in args:
        if arg not in allowed:
            return refuse(f"argument {arg[:60]!r} is not allowed for {name}")
    program = config.commands[name]
    return Decision(True, f"command {name}", argv=(program, *args), kind="command")


def parse_option_letters(option: str) -> Optional[str]:
    """The option letters of a short cluster (the capability blob left out); None if not a cluster."""
    match = SHORT_CLUSTER_RE.fullmatch(option)
    return None if match is None else match.group(1)


def decide_rsync(config: GateConfig, words: Sequence[str]) -> Decision:
    if len(words) < 2 or words[1] != "--server":
        return refuse("only 'rsync --server --sender' (a read) is allowed")
    if any(word == "--daemon" or word.startswith("--daemon=") for word in words[1:]):
        return refuse("rsync --daemon is not allowed")
    if len(words) < 3 or words[2] != "--sender":
        return refuse("writing is not allowed (rsync --server without --sender)")
    rest = list(words[3:])
    relative = False
    options = rest[: rest.index(".")] if "." in rest else rest
    for option in options:
        if option == "--":
            return refuse("unexpected '--' before '.'")
        if option.startswith("--"):
            name = option[2:].split("=", 1)[0]
            if name in SECLUDED_LONG:
                return refuse(f"{option} is not allowed (paths would bypass the gate)")
            if name in REFUSED_LONG:
                return refuse(f"--{name} is not allowed (a batch file would be written or read as root)")
            if "=" not in option and not all(SAFE_CHARS_RE.fullmatch(char) for char in option):
                return refuse(f"unexpected characters in option {option[:60]!r}")
            if name == "relative":
                relative = True
            elif name == "no-relative":
                relative = False
            continue
        if not option.startswith("-") or option == "-":
            if "." not in rest:
                return refuse("invalid rsync server command (no '.' argument)")
            return refuse(f"unexpected argument {option[:60]!r} before '.'")
        letters = parse_option_letters(option)
        if letters is None:
            return refuse(f"unexpected short option {option[:60]!r}")
        if "s" in letters:
            return refuse(f"secluded args ({option[:60]}) are not allowed (paths would bypass the gate)")
        if "R" in letters:
            relative = True
    if "." not in rest:
        return refuse("invalid rsync server command (no '.' argument)")
    paths = rest[len(options) + 1 :]
    if not paths:
        return refuse("no path given (rsync would send the whole root)")
    path_comps = []
    for path in paths:
        if PATH_SPECIAL_RE.search(path):
            return refuse(f"wildcards and braces are not allowed in paths: {path[:100]!r}")
        try:
            path_comps.append(check_absolute_path(path, "path"))
        except ValueError as exc:
            return refuse(str(exc))
    tree_comps = {tree: path_components(tree) or () for tree in config.trees}
    for path, comps in zip(paths, path_comps):
        if not any(is_below(comps, tcomps) for tcomps in tree_comps.values()):
            return refuse(f"path {path[:100]!r} is outside the configured trees")
    covering = [tree for tree, tcomps in tree_comps.items() if all(is_below(c, tcomps) for c in path_comps)]
    if not covering:
        return refuse("the paths lie in different trees (ask for one tree per transfer)")
    tree = min(covering, key=lambda name: len(tree_comps[name]))
    head = list(words[: 3 + len(options) + 1])
    if tree == "/":
        return rsync_decision(config, tree, words)
    if relative:
        return refuse(f"--relative is only allowed under tree / (asked under {tree})")
    respelt = []
    for path, comps in zip(paths, path_comps):
        below = comps[len(tree_comps[tree]) :]
        trailing = "/." if path.endswith("/.") else "/" if path.endswith("/") else ""
        if not below:
            if not trailing:
                return refuse(f"name the tree with a trailing slash ({tree}/), not {path[:100]!r}")
            respelt.append(trailing)
        else:
            respelt.append("/" + "/".join(below) + trailing)
    return rsync_decision(config, tree, head + respelt)


def rsync_decision(config: GateConfig, tree: str, words: Sequence[str]) -> Decision:
    """Allow ``rrsync -ro TREE`` with ``words`` spelt for rrsync; refuse if the spelling would not round-trip."""
    command = rrsync_command(words)
    if rrsync_words(command) != list(words) or not command.startswith("rsync --server --sender "):
        return refuse("cannot spell the command unambiguously for rrsync")
    return Decision(True, f"rsync read under tree {tree}", argv=(*priority_prefix(config), config.rrsync, "-ro", tree),
                    original_command=command, kind="rsync")


def priority_prefix(config: GateConfig) -> Tuple[str, ...]:
    """``ionice -c CLASS [-n LEVEL]`` and ``nice -n N`` in front of the transfer, as configured."""
    prefix: Tuple[str, ...] = ()
    if config.ionice is not None:
        klass, level = config.ionice
        prefix += (IONICE, "-c", IONICE_CLASSES[klass]) + (() if level is None else ("-n", str(level)))
    if config.nice:
        prefix += (NICE, "-n", str(config.nice))
    return prefix


# ------------------------------------------------------------------------------------------- logging
def sanitise(text: str) -> str:
    """Escape control characters (and the quote and backslash used by the log format)."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return CONTROL_RE.sub(lambda match: f"\\x{ord(match.group(0)):02x}", text)


def log_message(verdict: str, client: str, reason: str, command: Optional[str],
                exit_code: Optional[int] = None) -> str:
    shown = "(none)" if command is None else command
    if len(shown) > MAX_LOGGED_COMMAND:
        shown = shown[:MAX_LOGGED_COMMAND] + "..."
    code = "" if exit_code is None else f" exit={exit_code}"
    return (f'{verdict} client={sanitise(client) or "-"} reason="{sanitise(reason)}"{code} '
            f'command="{sanitise(shown)}"')


def client_address(environ: Mapping[str, str]) -> str:
    words = environ.get("SSH_CLIENT", "").split()
    return words[0] if words else "-"


def write_log(config_log: Optional[str], line: str, stderr: TextIO) -> None:
    if not config_log:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = f"{stamp} {SYSLOG_TAG}[{os.getpid()}] {line}\n".encode("utf-8", "backslashreplace")
    try:
        fd = os.open(config_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        stderr.write(f"dervish-gate: warning: cannot write log {config_log}: {exc.strerror}\n")


def send_syslog(enabled: bool, priority: str, line: str) -> None:
    if not enabled:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # no logger, no syslog: the file has it
        subprocess.run(
            ["logger", "-t", SYSLOG_TAG, "-p", priority, "--", line],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False, timeout=5,
        )


# ---------------------------------------------------------------------------------------------- edge
def parse_arguments(argv: Sequence[str], environ: Mapping[str, str]) -> Tuple[str, bool]:
    """(config path, check only): --config PATH (or --config=PATH) wins over $DERVISH_GATE_CONFIG, then
    the default; --check-config PATH only checks PATH."""
    path = environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    check = False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--config", "--check-config") and args:
            path = args.pop(0)
            check = check or arg == "--check-config"
        elif arg.startswith(("--config=", "--check-config=")):
            path = arg.split("=", 1)[1]
            check = check or arg.startswith("--check-config=")
        else:
            raise GateConfigError(f"unexpected gate argument {arg!r} "
                                  "(usage: dervish-gate [--config PATH] | dervish-gate --check-config PATH)")
    return path, check


def config_path(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    return parse_arguments(argv, environ)[0]


def check_config_file(path: str) -> None:
    """The verdict of ``--check-config``: the content only (the role checks a temporary copy)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GateConfigError(f"cannot read gate config {path}: {reason}") from None
    parse_config(text, path)


def check_executable(decision: Decision, config: GateConfig) -> Decision:
    """Refuse an allowed decision whose program is missing (rrsync: never fall back to plain rsync)."""
    if decision.kind == "rsync":
        programs = [word for word in decision.argv if word in (NICE, IONICE)] + [config.rrsync]
    else:
        programs = [decision.argv[0]]
    for program in programs:
        if os.path.isfile(program) and os.access(program, os.X_OK):
            continue
        if program == config.rrsync and decision.kind == "rsync":
            return refuse(f"rrsync not found at {program} (install rsync's rrsync); refusing rsync without it")
        return refuse(f"program {program} is missing or not executable")
    return decision


@dataclass(frozen=True)
class Outcome:
    """How an allowed program ended: its exit code (128+N for signal N) and its last stderr line."""

    returncode: int
    last_error: str = ""
    refusal: str = ""  # rrsync's own "<rrsync> error: <why>" line, without the prefix


def run_child(argv: Sequence[str], environ: Mapping[str, str], rrsync: str = DEFAULT_RRSYNC,
              stderr_fd: int = 2) -> Outcome:
    """Run ``argv`` with the connection's stdin/stdout; pass its stderr through, remembering the end.

    OSError when it cannot be started.
    """
    child = subprocess.Popen(list(argv), env=dict(environ), stderr=subprocess.PIPE)
    previous = {}

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[signum] = signal.signal(signum, forward)
    tail = b""
    try:
        if child.stderr is None:
            raise AssertionError("the child's stderr is a pipe")
        while True:
            try:
                chunk = os.read(child.stderr.fileno(), 65536)
            except InterruptedError:  # pragma: no cover - retried by Python already
                continue
            if not chunk:
                break
            with contextlib.suppress(OSError):  # the server went away: keep draining, the child ends
                os.write(stderr_fd, chunk)
            tail = (tail + chunk)[-8192:]
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    lines = [line.strip() for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
    # rrsync refuses before rsync starts, so its one line is all of stderr, never cut off
    marker = f"{rrsync} error: "
    refusal = next((line[len(marker):] for line in lines if line.startswith(marker)), "")
    return Outcome(code if code >= 0 else 128 - code, lines[-1][:200] if lines else "", refusal[:200])


def judge(decision: Decision, outcome: Outcome) -> Tuple[str, str, str]:
    """(verdict, syslog priority, reason) of a program that ran."""
    if decision.kind == "rsync" and outcome.refusal and outcome.returncode == EXIT_REFUSED:
        return "REFUSE", "auth.warning", f"rrsync refused: {outcome.refusal}"
    if outcome.returncode == 0:
        return "ALLOW", "auth.info", decision.reason
    detail = f": {outcome.last_error}" if outcome.last_error else ""
    return "FAIL", "auth.warning", f"{decision.reason}{detail}"


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None,
         stderr: Optional[TextIO] = None, spawn=None, fallback_log: Optional[str] = DEFAULT_LOG,
         fallback_syslog: bool = True) -> int:
    """Decide on $SSH_ORIGINAL_COMMAND, run the allowed program, then log the outcome; or refuse.

    ``spawn(argv, environ, rrsync)`` replaces run_child (tests); ``fallback_log``/``fallback_syslog``
    are where a refusal is logged when the config cannot be read.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ if environ is None else environ)
    stderr = sys.stderr if stderr is None else stderr
    spawn = run_child if spawn is None else spawn
    command = environ.get("SSH_ORIGINAL_COMMAND")
    client = client_address(environ)
    log_file, syslog = fallback_log, fallback_syslog
    config: Optional[GateConfig] = None
    check_only = False
    try:
        path, check_only = parse_arguments(argv, environ)
        if check_only:
            check_config_file(path)
            return 0
        config = load_config(path)
        log_file, syslog = config.log_file, config.syslog
        decision = decide(config, command)
        if decision.allowed:
            decision = check_executable(decision, config)
    except GateConfigError as exc:
        if check_only:
            stderr.write(f"dervish-gate: {exc}\n")
            return EXIT_REFUSED
        decision = refuse(f"config error: {exc}")
    if not decision.allowed or config is None:
        line = log_message("REFUSE", client, decision.reason, command)
        write_log(log_file, line, stderr)
        send_syslog(syslog, "auth.warning", line)
        stderr.write(f"dervish-gate: refused: {sanitise(decision.reason)}\n")
        stderr.flush()
        return EXIT_REFUSED
    if decision.original_command is not None:
        environ["SSH_ORIGINAL_COMMAND"] = decision.original_command
    stderr.flush()
    try:
        outcome = spawn(decision.argv, environ, config.rrsync)
    except OSError as exc:
        stderr.write(f"dervish-gate: cannot run {decision.argv[0]}: {exc.strerror}\n")
        outcome = Outcome(EXIT_EXEC_FAILED, f"cannot run {decision.argv[0]}: {exc.strerror}")
    verdict, priority, reason = judge(decision, outcome)
    line = log_message(verdict, client, reason, command, exit_code=outcome.returncode)
    write_log(log_file, line, stderr)
    send_syslog(syslog, priority, line)
    return outcome.returncode


if __name__ == "__main__":
    raise SystemExit(main())
