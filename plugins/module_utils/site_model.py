"""The backup site as the inventory describes it: which server backs up which client's vaults.

Shared by the ``validate_site`` action (checks every host before anything changes) and the
``client_vaults`` / ``server_vaults`` filters (what the roles write). Works on plain mappings of
inventory variables, so it is tested without Ansible's machinery.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import (
    UNSAFE_RSYNC_OPTIONS,
    check_name,
    check_vault_file,
    load_master,
)
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import ConfigError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_gate import (
    GateConfigError,
    check_absolute_path,
    parse_config,
)

SERVERS_GROUP = "backup_servers"
CLIENTS_GROUP = "backup_clients"
# What a vault made from backup_client_filesystems leaves out unless the inventory says otherwise
# (backup_client_default_excludes): swap files, package and temporary caches, fsck's lost+found.
# Absolute entries are paths on the client, anchored at the vault whose tree holds them; the
# others are rsync patterns used as written in every such vault.
DEFAULT_VAULT_EXCLUDES = (
    "/swap.img",
    "/swapfile",
    "/var/cache/apt/archives/*.deb",
    "/var/cache/apt/*.bin",
    "/var/tmp/*",
    "/tmp/*",
    "lost+found/",
)
# The roles' rsh: line of master.conf; only its shape matters to the engine's check.
MASTER_RSH = "ssh -o BatchMode=yes"
# backup_client_metadata: the gate's command (installed by backup_client as /usr/local/sbin/<name>)
# and what the server's vault configurations send through the gate for it.
METADATA_GATE_COMMAND = "dervish-metadata"
METADATA_PROGRAM = "/usr/local/sbin/dervish-metadata"
METADATA_COMMAND = "dervish-metadata --json"


class SiteError(Exception):
    """An inventory mistake; the message names the host and the variable."""


@dataclass(frozen=True)
class Vault:
    """One vault: a tree of one client, backed up into its own directory of a bank."""

    name: str
    client: str
    address: str
    tree: str
    excludes: Tuple[str, ...] = ()
    rsync_options: Tuple[str, ...] = ()
    expire_default: str = ""
    expire_rules: Tuple[str, ...] = ()
    xdev: bool = True
    pre_client: str = ""   # program on the client, run through its gate as dervish-pre-client-<name>
    post_client: str = ""  # likewise, dervish-post-client-<name>
    metadata: str = ""     # the vault's metadata: command (backup_client_metadata), "" for none

    def gate_hooks(self) -> List[Dict[str, str]]:
        """The client hooks as the two ends name them: the engine's hook key (``pre-client``), the
        gate's command name (``dervish-pre-client-<vault>``) and the program on the client."""
        return [gate_hook(key, self.name, program)
                for key, program in (("pre-client", self.pre_client), ("post-client", self.post_client)) if program]

    def as_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in ("excludes", "rsync_options", "expire_rules"):
            data[key] = list(data[key])
        data["gate_hooks"] = self.gate_hooks()
        return data


def gate_hook(hook: str, vault: str, program: str) -> Dict[str, str]:
    """A client hook of a vault: the engine's key, the gate's command name, the client's program."""
    return {"hook": hook, "command": f"dervish-{hook}-{vault}", "program": program}


@dataclass
class SiteReport:
    errors: List[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.errors.append(message)


def default_vault_name(client: str, filesystem: str) -> str:
    """``laptop1`` + ``/`` -> ``laptop1-root``; ``/var/log`` -> ``laptop1-var-log``; other characters -> ``-``."""
    tail = re.sub(r"[^A-Za-z0-9._-]", "-", filesystem.strip("/").replace("/", "-"))
    return f"{client}-{tail or 'root'}"


def anchored_exclude(path: str, tree: str) -> Optional[str]:
    """An absolute path as an rsync exclude anchored at the tree, or None if outside it."""
    path = posixpath.normpath(path)
    tree = posixpath.normpath(tree)
    if tree == "/":
        return path + "/" if path != "/" else None
    if path == tree or not path.startswith(tree + "/"):
        return None
    return path[len(tree):] + "/"


def tree_exclude(pattern: str, tree: str) -> Optional[str]:
    """A default exclude for the vault of ``tree``: absolute ones re-anchored at the tree, or None if outside it."""
    if not pattern.startswith("/"):
        return pattern
    tree = posixpath.normpath(tree)
    if tree == "/":
        return pattern
    if not pattern.startswith(tree + "/"):
        return None
    return pattern[len(tree):]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def client_address(client: str, client_vars: Mapping[str, Any]) -> str:
    return _text(client_vars.get("backup_client_address")) or _text(client_vars.get("ansible_host")) or client


def metadata_enabled(client_vars: Mapping[str, Any]) -> bool:
    """backup_client_metadata with the role's default (true)."""
    value = client_vars.get("backup_client_metadata")
    return True if value is None else bool(value)


def client_vaults(client: str, client_vars: Mapping[str, Any]) -> List[Vault]:
    """The client's vaults, explicit or one per listed filesystem, with the site-wide excludes."""
    address = client_address(client, client_vars)
    metadata = METADATA_COMMAND if metadata_enabled(client_vars) else ""
    explicit = client_vars.get("backup_client_vaults") or []
    if explicit:
        raw = [dict(item) for item in explicit]
    else:
        filesystems = client_vars.get("backup_client_filesystems") or ["/"]
        defaults = client_vars.get("backup_client_default_excludes")
        defaults = DEFAULT_VAULT_EXCLUDES if defaults is None else [str(p) for p in defaults]
        raw = [{"name": default_vault_name(client, fs), "tree": fs,
                "excludes": [p for p in (tree_exclude(d, str(fs)) for d in defaults) if p is not None]}
               for fs in filesystems]
    exclude_paths = [str(p) for p in client_vars.get("backup_client_exclude_paths") or []]
    vaults = []
    for item in raw:
        tree = posixpath.normpath(str(item["tree"]))
        excludes = [str(e) for e in item.get("excludes") or []]
        for path in exclude_paths:
            pattern = anchored_exclude(path, tree)
            if pattern and pattern not in excludes:
                excludes.append(pattern)
        xdev = item.get("xdev")
        vaults.append(Vault(
            name=str(item["name"]),
            client=client,
            address=address,
            tree=tree,
            excludes=tuple(excludes),
            rsync_options=tuple(str(o) for o in item.get("rsync_options") or []),
            expire_default=_text(item.get("expire_default")),
            expire_rules=tuple(str(r) for r in item.get("expire_rules") or []),
            xdev=True if xdev is None else bool(xdev),
            pre_client=_text(item.get("pre_client")),
            post_client=_text(item.get("post_client")),
            metadata=metadata,
        ))
    return vaults


def client_server(client: str, client_vars: Mapping[str, Any], servers: Sequence[str]) -> str:
    """The inventory name of the client's backup server."""
    named = _text(client_vars.get("backup_client_server"))
    if named:
        if named not in servers:
            known = ", ".join(servers) or "none"
            raise SiteError(
                f"{client}: backup_client_server is {named!r}, which is not a host of the group "
                f"{SERVERS_GROUP!r} (its hosts: {known})"
            )
        return named
    if len(servers) == 1:
        return servers[0]
    if not servers:
        raise SiteError(f"{client}: the inventory has no host in the group {SERVERS_GROUP!r} to back it up")
    raise SiteError(
        f"{client}: backup_client_server is not set and the inventory has {len(servers)} backup servers "
        f"({', '.join(servers)}); name one"
    )


def backup_server_of(client: str, hostvars: Mapping[str, Mapping[str, Any]],
                     groups: Mapping[str, Sequence[str]]) -> str:
    """The inventory name of the server that backs up ``client``, a host of the group backup_clients."""
    if client not in (groups.get(CLIENTS_GROUP) or []):
        raise SiteError(f"{client}: not a host of the group {CLIENTS_GROUP!r}, so no backup server backs it up")
    return client_server(client, hostvars[client], list(groups.get(SERVERS_GROUP) or []))


def vault_of_path(client: str, client_vars: Mapping[str, Any], path: str, vault: str = "") -> Vault:
    """The vault of ``client`` whose tree holds the absolute client ``path`` (the longest tree that is a
    prefix of it, component by component), or the one named ``vault``, which must hold it."""
    text = str(path)
    try:
        parts = check_absolute_path(text, "path")
    except ValueError as err:
        raise SiteError(f"{client}: dervish_restore_paths: {err}") from None
    vaults = client_vaults(client, client_vars)
    if vault:
        named = [v for v in vaults if v.name == vault]
        if not named:
            raise SiteError(f"{client}: dervish_restore_vault: {vault!r} is not a vault of {client} "
                            f"(its vaults: {', '.join(v.name for v in vaults) or 'none'})")
        candidates = named
    else:
        candidates = vaults
    holding = []
    for candidate in candidates:
        top = check_absolute_path(candidate.tree, "tree")
        if parts[:len(top)] == top:
            holding.append((len(top), candidate))
    if not holding:
        trees = ", ".join(f"{v.name} ({v.tree})" for v in candidates) or "none"
        raise SiteError(f"{client}: dervish_restore_paths: {text!r} is in no tree of "
                        f"{'the vault ' + vault if vault else 'its vaults'}: {trees}")
    return max(holding, key=lambda item: item[0])[1]


def server_vaults(server: str, hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]]
                  ) -> List[Vault]:
    """Every vault the given server backs up, in inventory order."""
    servers = list(groups.get(SERVERS_GROUP, []))
    vaults: List[Vault] = []
    for client in groups.get(CLIENTS_GROUP, []):
        if client_server(client, hostvars[client], servers) == server:
            vaults.extend(client_vaults(client, hostvars[client]))
    return vaults


def _check_variables(host: str, host_vars: Mapping[str, Any], prefix: str, spec: Mapping[str, Any],
                     report: SiteReport) -> Optional[Dict[str, Any]]:
    """Validate the host's ``<prefix>*`` variables against a role's argument spec.

    Returns them with the role's defaults filled in, or None when any of them is wrong.
    """
    errors_before = len(report.errors)
    provided = {}
    for name in host_vars:
        if not name.startswith(prefix):
            continue
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(spec))}"
            report.add(f"{host}: unknown variable {name}{hint}")
            continue
        provided[name] = host_vars[name]
    result = ArgumentSpecValidator(dict(spec)).validate(provided)
    for message in result.error_messages:
        report.add(f"{host}: {message}")
    return None if len(report.errors) > errors_before else result.validated_parameters


# ------------------------------------------------------------------------------ one parser per value
# Every value is checked by the parser that reads it on the hosts: the engine's configuration
# loader for what goes into master.conf and the vault configurations, the gate's parser for its
# trees and commands. The configurations are rendered as the roles' templates render them; each
# line remembers the variable it came from, so an error names that variable, not a file.

Lines = List[Tuple[str, str]]


def _engine_problems(lines: Lines, check: Callable[[Path], Any]) -> List[Tuple[str, str]]:
    """(variable, message) of every line the engine refuses: the engine stops at the first one,
    so that line is left out and the rest checked again."""
    problems: List[Tuple[str, str]] = []
    lines = list(lines)
    with tempfile.TemporaryDirectory(prefix="dervish-validate-") as tmp:
        path = Path(tmp) / "rendered.conf"
        while lines:
            path.write_text("".join(text + "\n" for text, dummy in lines), encoding="utf-8")
            try:
                check(path)
            except ConfigError as err:
                line = err.line if isinstance(err.line, int) and 0 < err.line <= len(lines) else None
                problems.append((lines[line - 1][1] if line else lines[0][1], err.message))
                if line is None or lines[line - 1][0].endswith(":") and not lines[line - 1][0].startswith("\t"):
                    break  # not one value's line: nothing to leave out
                del lines[line - 1]
                continue
            break
    return problems


def master_config_lines(server_vars: Mapping[str, Any]) -> Lines:
    """master.conf as templates/etc/dervish/master.conf.j2 writes it (without the Runall list)."""
    lines: Lines = [("bank:", "backup_server_banks")]
    lines += [(f"\t{bank}", f"backup_server_banks[{i}]") for i, bank in enumerate(server_vars["backup_server_banks"])]
    lines += [(f"rsh: {MASTER_RSH}", "backup_server_ssh_key"),
              (f"rsync-timeout: {server_vars['backup_server_rsync_timeout']}", "backup_server_rsync_timeout"),
              (f"expire-default: {server_vars['backup_server_expire_default']}", "backup_server_expire_default")]
    rules = server_vars.get("backup_server_expire_rules") or []
    if rules:
        lines.append(("expire-rule:", "backup_server_expire_rules"))
        lines += [(f"\t{rule}", f"backup_server_expire_rules[{i}]") for i, rule in enumerate(rules)]
    lines.append((f"Runall-jobs: {server_vars['backup_server_max_parallel']}", "backup_server_max_parallel"))
    return lines


def vault_config_lines(vault: Vault, where: str, excludes_from: str) -> Lines:
    """A vault's configuration as templates/etc/dervish/vaults/vault.conf.j2 writes it."""
    tree = vault.tree.replace("#", "\\#").replace(" ", "\\ ")
    lines: Lines = [(f"client: {vault.address}", "backup_client_address"), (f"tree: {tree}", f"{where}.tree"),
                    (f"{'SET' if vault.xdev else 'UNSET'} xdev", f"{where}.xdev")]
    if vault.excludes:
        lines.append(("exclude:", excludes_from))
        lines += [("\t" + pattern.replace("#", "\\#"), excludes_from) for pattern in vault.excludes]
    if vault.rsync_options:
        lines.append(("rsync-option:", f"{where}.rsync_options"))
        lines += [("\t" + option.replace("#", "\\#"), f"{where}.rsync_options[{i}]")
                  for i, option in enumerate(vault.rsync_options)]
    if vault.expire_default:
        lines.append((f"expire-default: {vault.expire_default}", f"{where}.expire_default"))
    if vault.expire_rules:
        lines.append(("expire-rule:", f"{where}.expire_rules"))
        lines += [(f"\t{rule}", f"{where}.expire_rules[{i}]") for i, rule in enumerate(vault.expire_rules)]
    lines += [(f"{hook['hook']}: gate:{hook['command']}", f"{where}.{hook['hook'].replace('-', '_')}")
              for hook in vault.gate_hooks()]
    if vault.metadata:
        lines.append((f"metadata: {vault.metadata}", "backup_client_metadata"))
    return lines


def _gate_problem(lines: Lines) -> Optional[Tuple[str, str]]:
    """(variable, message) of the first line the gate's parser refuses, or None."""
    try:
        parse_config("".join(text + "\n" for text, dummy in lines), "gate.conf")
    except GateConfigError as err:
        found = re.match(r"^gate\.conf line (\d+): (.*)$", str(err), re.S)
        if found and 0 < int(found.group(1)) <= len(lines):
            return lines[int(found.group(1)) - 1][1], found.group(2)
        return (lines[0][1] if lines else "backup_client_gate_commands"), str(err)
    return None


def gate_config_lines(trees: Sequence[Tuple[str, str]], commands: Mapping[str, Any],
                      hooks: Sequence[Tuple[Mapping[str, str], str]] = (), metadata: bool = False) -> Lines:
    """The gate's configuration as templates/etc/dervish/gate.conf.j2 writes it, from the raw values;
    ``hooks`` are (Vault.gate_hooks() entry, variable) pairs; ``metadata``: backup_client_metadata."""
    lines: Lines = [(f"tree {shlex.quote(str(tree))}", where) for tree, where in trees]
    lines += [(f"command {shlex.quote(str(name))} {shlex.quote(_text(path))}", f"backup_client_gate_commands.{name}")
              for name, path in sorted(commands.items(), key=lambda item: str(item[0]))]
    if metadata:
        lines += [(f"command {METADATA_GATE_COMMAND} {METADATA_PROGRAM}", "backup_client_metadata"),
                  (f"arg {METADATA_COMMAND}", "backup_client_metadata")]
    lines += [(f"command {shlex.quote(hook['command'])} {shlex.quote(hook['program'])}", where)
              for hook, where in hooks]
    return lines


def _check_gate(client: str, trees: Sequence[Tuple[str, str]], commands: Mapping[str, Any],
                report: SiteReport, hooks: Sequence[Tuple[Mapping[str, str], str]] = (),
                metadata: bool = False) -> None:
    lines = gate_config_lines(trees, commands, hooks, metadata)
    found = False
    for line in lines:  # each line alone names its own variable
        if line[0].startswith("arg "):
            continue  # judged with its command line below
        problem = _gate_problem([line])
        if problem:
            report.add(f"{client}: {problem[0]}: {problem[1]}")
            found = True
    if not found and lines:  # then rules across lines (a command name defined twice, ...)
        problem = _gate_problem(lines)
        if problem:
            report.add(f"{client}: {problem[0]}: {problem[1]}")


# ------------------------------------------------------------------------------------- cron schedule
CRON_MACROS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
                ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
                ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_CRON_ITEM_RE = re.compile(r"^(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?$")


def _cron_number(word: str, low: int, high: int, names: Sequence[str], what: str) -> int:
    if word.isdigit():
        number = int(word)
    elif word.lower() in names:
        number = names.index(word.lower()) + low
    else:
        raise ValueError(f"{what} {word!r} is not a number" + (f" or a name ({', '.join(names)})" if names else ""))
    if not low <= number <= high:
        raise ValueError(f"{what} {word} is outside {low}-{high}")
    return number


def check_cron_schedule(schedule: str) -> None:
    """ValueError unless ``schedule`` is cron's time (five fields, or a macro such as ``@daily``)."""
    if "\n" in schedule or "\r" in schedule:
        raise ValueError("it spans several lines (cron would read the rest as another job)")
    fields = schedule.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        if fields[0] not in CRON_MACROS:
            raise ValueError(f"unknown macro {fields[0]!r} (known: {', '.join(CRON_MACROS)})")
        return
    if len(fields) != 5:
        raise ValueError(f"it has {len(fields)} fields, not 5")
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            match = _CRON_ITEM_RE.match(item)
            if not match:
                raise ValueError(f"{what} {item!r} is not *, N, N-M or a step /S of those")
            dummy, first, last, step = match.groups()
            if first is not None:
                start = _cron_number(first, low, high, names, what)
                if last is not None and _cron_number(last, low, high, names, what) < start:
                    raise ValueError(f"{what} range {item!r} ends before it starts")
                if step is not None and last is None:
                    raise ValueError(f"{what} step {item!r} needs * or a range before the /")
            if step is not None and int(step) == 0:
                raise ValueError(f"{what} step {item!r} is 0")


# The systemd timer's OnCalendar= from the cron time: each field's set of values, spelt out, so
# systemd fires exactly when cron would. Cron runs a job when the day of month OR the day of week
# matches if both are restricted (neither starts with '*'); OnCalendar= needs both: not translated.
_MACRO_CALENDARS = {"@yearly": "*-01-01 00:00:00", "@annually": "*-01-01 00:00:00",
                    "@monthly": "*-*-01 00:00:00", "@weekly": "Sun *-*-* 00:00:00",
                    "@daily": "*-*-* 00:00:00", "@midnight": "*-*-* 00:00:00", "@hourly": "*-*-* *:00:00"}
_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def _cron_values(text: str, low: int, high: int, names: Sequence[str], what: str) -> List[int]:
    values = set()
    for item in text.split(","):
        dummy, first, last, step = _CRON_ITEM_RE.match(item).groups()
        start = low if first is None else _cron_number(first, low, high, names, what)
        end = high if first is None else (start if last is None else _cron_number(last, low, high, names, what))
        values.update(range(start, end + 1, int(step or 1)))
    return sorted(values)


def cron_to_oncalendar(schedule: str) -> str:
    """systemd's ``OnCalendar=`` for a cron time (checked by :func:`check_cron_schedule`); ValueError
    for what a calendar event cannot say (``@reboot``; both day fields restricted)."""
    check_cron_schedule(schedule)
    fields = schedule.split()
    if len(fields) == 1:
        if fields[0] not in _MACRO_CALENDARS:
            raise ValueError(f"{fields[0]} is not a time of day")
        return _MACRO_CALENDARS[fields[0]]
    if not fields[2].startswith("*") and not fields[4].startswith("*"):
        raise ValueError("cron runs it when the day of month OR the day of week matches, which OnCalendar= "
                         "cannot express")
    spelt = []
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS):
        values = _cron_values(text, low, high, names, what)
        if what == "day of week":
            days = sorted({v % 7 for v in values}, key=lambda v: (v - 1) % 7)  # Monday first, as systemd
            spelt.append("" if len(days) == 7 else ",".join(_WEEKDAYS[d] for d in days) + " ")
        else:
            spelt.append("*" if values == list(range(low, high + 1)) else ",".join(f"{v:02d}" for v in values))
    minute, hour, dom, month, dow = spelt
    return f"{dow}*-{month}-{dom} {hour}:{minute}:00"


def timer_oncalendar(server_vars: Mapping[str, Any]) -> str:
    """The timer's ``OnCalendar=``: backup_server_timer_oncalendar, else backup_server_schedule translated."""
    return _text(server_vars.get("backup_server_timer_oncalendar")) or cron_to_oncalendar(
        _text(server_vars.get("backup_server_schedule")))


def check_oncalendar(value: str, analyze: Optional[str] = None) -> Optional[str]:
    """systemd's own verdict on a calendar time (``systemd-analyze calendar``), None when it is fine or
    when this machine has no systemd-analyze (the role asks the server's before installing the timer)."""
    analyze = analyze or shutil.which("systemd-analyze")
    if not analyze:
        return None
    try:
        done = subprocess.run([analyze, "calendar", "--", value], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return f"systemd-analyze could not run: {err}"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"systemd-analyze calendar exited {done.returncode}"


def timer_problems(checked: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(variable, message) for a systemd timer time that systemd would not read (scheduler systemd only)."""
    if checked.get("backup_server_scheduler") != "systemd" or not checked.get("backup_server_cron", True):
        return []
    own = _text(checked.get("backup_server_timer_oncalendar"))
    try:
        value = timer_oncalendar(checked)
    except ValueError as err:
        return [("backup_server_schedule", f"{_text(checked.get('backup_server_schedule'))!r} has no systemd "
                 f"calendar equivalent: {err}; set backup_server_timer_oncalendar (e.g. '*-*-* 04:00:00')")]
    problem = check_oncalendar(value)
    if problem:
        variable = "backup_server_timer_oncalendar" if own else "backup_server_schedule"
        return [(variable, f"OnCalendar={value!r} is not a systemd calendar time: {problem}")]
    return []


# ----------------------------------------------------------------------------------- other checks
def _multiline(where: str, value: Any) -> List[str]:
    """The names (``where.key[i]``) of every string in ``value`` that spans several lines."""
    if isinstance(value, str):
        return [where] if ("\n" in value or "\r" in value) else []
    if isinstance(value, Mapping):
        return [name for key, item in value.items() for name in _multiline(f"{where}.{key}", item)]
    if isinstance(value, (list, tuple)):
        return [name for i, item in enumerate(value) for name in _multiline(f"{where}[{i}]", item)]
    return []


def _check_single_lines(host: str, checked: Mapping[str, Any], report: SiteReport) -> bool:
    before = len(report.errors)
    for name, value in checked.items():
        for where in _multiline(name, value):
            report.add(f"{host}: {where}: the value spans several lines; every value must be one line "
                       "(configuration files and the cron table are line-based)")
    return len(report.errors) == before


def _path_problem(path: Any, what: str) -> Optional[str]:
    """The gate's verdict on an absolute path (no '..', no control characters), or None."""
    try:
        check_absolute_path(str(path), what)
    except ValueError as err:
        return str(err)
    return None


def from_address(server: str, server_vars: Mapping[str, Any]) -> Tuple[str, str]:
    """(variable, value) of the address clients accept the server's key from (as the client role picks it)."""
    for name in ("backup_server_address", "ansible_host"):
        value = _text(server_vars.get(name))
        if value:
            return name, value
    return "inventory name (neither backup_server_address nor ansible_host is set)", server


def _is_address_list(value: str) -> bool:
    try:
        for part in value.split(","):
            ipaddress.ip_network(part, strict=False)
    except ValueError:
        return False
    return True


def _check_server(server: str, checked: Mapping[str, Any], server_vars: Mapping[str, Any],
                  report: SiteReport) -> None:
    one_line = _check_single_lines(server, checked, report)
    variable, address = from_address(server, server_vars)
    if not _is_address_list(address):
        report.add(f"{server}: {variable} {address!r} is not an IP address: clients accept the backup key only "
                   f'from="{address}", and sshd matches a host name there only with UseDNS yes (off by default), '
                   "so every backup would be refused; set backup_server_address to the address (or addresses, "
                   "comma-separated) the clients see the server connect from")
    try:
        if one_line:  # else reported already
            check_cron_schedule(str(checked["backup_server_schedule"]))
    except ValueError as err:
        report.add(f"{server}: backup_server_schedule: {checked['backup_server_schedule']!r} is not a cron time: "
                   f"{err}; expected MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK (e.g. '0 4 * * *') or @daily")
    if one_line:
        for variable, message in timer_problems(checked):
            report.add(f"{server}: {variable}: {message}")
    for name in ("backup_server_ssh_key", "backup_server_drivelog"):
        problem = _path_problem(checked[name], "path")
        if problem:
            report.add(f"{server}: {name}: {problem}")
    textfile = _text(checked.get("backup_server_textfile_path"))
    if textfile:
        problem = _path_problem(textfile, "path")
        if problem or not textfile.endswith(".prom"):
            report.add(f"{server}: backup_server_textfile_path: {textfile!r}: " + (problem or "node_exporter's "
                       "textfile collector reads only files named *.prom") + "; expected e.g. "
                       "'/var/lib/prometheus/node-exporter/dervish.prom', or '' for no textfile")
    drive = checked.get("backup_server_drive") or {}
    mount_point = None
    if drive.get("label") or drive.get("uuid"):
        mount_point = str(drive.get("mount_point") or "")
        problem = _path_problem(mount_point, "mount point")
        if problem:
            report.add(f"{server}: backup_server_drive.mount_point: {problem}")
            mount_point = None
    banks_ok = True
    for index, bank in enumerate(checked.get("backup_server_banks") or []):
        if not str(bank).startswith("/"):
            report.add(f"{server}: backup_server_banks: {bank!r} is not an absolute path")
            banks_ok = False
            continue
        problem = _path_problem(bank, "bank")
        if problem:
            report.add(f"{server}: backup_server_banks[{index}]: {problem} (the nightly run would refuse it)")
            banks_ok = False
        elif mount_point and not _is_below(bank, mount_point):
            report.add(f"{server}: backup_server_banks: {bank!r} is not below the drive's mount point "
                       f"{mount_point!r} (backup_server_drive.mount_point)")
    if banks_ok and one_line:
        for variable, message in _engine_problems(master_config_lines(checked), load_master):
            report.add(f"{server}: {variable}: {message}")


def _is_below(path: str, top: str) -> bool:
    """True if ``path`` lies strictly below ``top``, component by component."""
    comps, top_comps = check_absolute_path(str(path), "path"), check_absolute_path(str(top), "path")
    return len(comps) > len(top_comps) and comps[:len(top_comps)] == top_comps


def _check_vault_fields(client: str, vaults: Sequence[Mapping[str, Any]], report: SiteReport) -> None:
    for index, vault in enumerate(vaults):
        where = f"{client}: backup_client_vaults[{index}]"
        name = str(vault.get("name", ""))
        try:  # the engine's rule, as for every vault it loads
            check_name("vault", name)
        except ConfigError as err:
            report.add(f"{where}.name: {err.message}")
        tree = str(vault.get("tree", ""))
        if not tree.startswith("/"):
            report.add(f"{where}.tree {tree!r} is not an absolute path")
        for option in vault.get("rsync_options") or []:
            if str(option).split("=", 1)[0].strip() in UNSAFE_RSYNC_OPTIONS:
                report.add(f"{where}.rsync_options: {option} is not allowed: it would write into files that "
                           "earlier images share through hard links")
        for key in ("name", "tree", "excludes", "rsync_options", "expire_default", "expire_rules"):
            values = vault.get(key) or []
            for value in [values] if isinstance(values, str) else values:
                if "\n" in str(value) or "\r" in str(value):
                    report.add(f"{where}.{key}: {value!r} spans several lines")


def _check_client(client: str, checked: Mapping[str, Any], report: SiteReport) -> bool:
    """Check the client's values; False if its vaults cannot even be rendered."""
    explicit = checked.get("backup_client_vaults") or []
    before = len(report.errors)
    _check_vault_fields(client, explicit, report)
    if not _check_single_lines(client, {k: v for k, v in checked.items() if k != "backup_client_vaults"}, report):
        return False
    trees: List[Tuple[str, str]] = []
    if explicit:
        trees = [(str(v.get("tree", "")), f"backup_client_vaults[{i}].tree") for i, v in enumerate(explicit)]
    else:
        for index, path in enumerate(checked.get("backup_client_filesystems") or []):
            trees.append((str(path), f"backup_client_filesystems[{index}]"))
            if not str(path).startswith("/"):
                report.add(f"{client}: backup_client_filesystems: {path!r} is not an absolute path")
    for index, path in enumerate(checked.get("backup_client_exclude_paths") or []):
        if not str(path).startswith("/"):
            report.add(f"{client}: backup_client_exclude_paths: {path!r} is not an absolute path")
        else:
            problem = _path_problem(path, "path")
            if problem:
                report.add(f"{client}: backup_client_exclude_paths[{index}]: {problem}")
    renderable = len(report.errors) == before
    hooks = [(gate_hook(key.replace("_", "-"), str(vault.get("name", "")), _text(vault[key])),
              f"backup_client_vaults[{index}].{key}")
             for index, vault in enumerate(explicit) for key in ("pre_client", "post_client") if vault.get(key)]
    _check_gate(client, [(tree, where) for tree, where in trees if tree.startswith("/")],
                checked.get("backup_client_gate_commands") or {}, report, hooks, metadata_enabled(checked))
    return renderable


def _check_client_vaults(client: str, checked: Mapping[str, Any], vaults: Sequence[Vault],
                         report: SiteReport) -> None:
    explicit = bool(checked.get("backup_client_vaults"))
    for index, vault in enumerate(vaults):
        where = f"backup_client_vaults[{index}]" if explicit else f"backup_client_filesystems[{index}]"
        excludes_from = f"{where}.excludes" if explicit else "backup_client_default_excludes"
        for variable, message in _engine_problems(vault_config_lines(vault, where, excludes_from), check_vault_file):
            report.add(f"{client}: {variable}: {message}")


def validate_site(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                  client_spec: Mapping[str, Any], server_spec: Mapping[str, Any]) -> List[str]:
    """Every inventory mistake of the site, one message each (empty list: the site is sound)."""
    report = SiteReport()
    servers = list(groups.get(SERVERS_GROUP, []))
    clients = list(groups.get(CLIENTS_GROUP, []))
    for server in servers:
        checked = _check_variables(server, hostvars[server], "backup_server_", server_spec, report)
        if checked is not None:
            _check_server(server, checked, hostvars[server], report)
    vault_owner: Dict[Tuple[str, str], str] = {}
    for client in clients:
        errors_before = len(report.errors)
        host_vars = hostvars[client]
        checked = _check_variables(client, host_vars, "backup_client_", client_spec, report)
        if checked is None:
            continue
        try:
            server = client_server(client, host_vars, servers)
        except SiteError as err:
            report.add(str(err))
            continue
        if not _check_client(client, checked, report):
            continue
        vaults = client_vaults(client, {**checked, "ansible_host": host_vars.get("ansible_host")})
        _check_client_vaults(client, checked, vaults, report)
        if len(report.errors) > errors_before:
            continue
        for vault in vaults:
            owner = vault_owner.get((server, vault.name))
            if owner is not None:
                where = "twice in its backup_client_vaults" if owner == client else f"also a vault of {owner}"
                report.add(f"{client}: vault {vault.name!r} (backup_client_vaults) is {where}; "
                           f"vault names must be unique on server {server}")
            vault_owner[(server, vault.name)] = client
    return report.errors
