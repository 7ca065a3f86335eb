"""Option registry and loading of master, vault and branch configuration (dirvish.conf(5)).

Load order (as Dirvish): the master file (``confdir`` = its directory); after the first ``client:``
is seen, the optional ``<confdir>/<host>.conf``; the vault's ``dirvish/default.conf``; then
``<branch>.conf`` when a branch other than ``default`` is given; then ``extra_files``; then
``overrides`` (command line). Later scalar values win; lists accumulate unless ``RESET``.
Relative config names (``config: common``) are searched in ``<bank>/<vault>/dirvish/`` then in
``confdir``; ``.conf`` is optional. Names containing ``/`` are paths (relative ones to the
including file's directory).

Differences from Dirvish (fixes of its pitfalls), all reported as ``ConfigError`` with ``file:line``:

* unknown or misspelt lowercase keys are errors (with a "did you mean" suggestion); unknown
  capitalised keys are left to other tools unless they look like a misspelt ``Runall``-key;
* ``exclude: *.tmp`` (a list key written on one line) appends ``*.tmp``;
* obsolete ``rsync-options:`` is an error; bad values (octal perms, choices, booleans, expire specs
  and rules, image times, runall entries) are rejected at load time;
* an include loop is an error naming both files, but a file that was already loaded earlier
  (not part of the loop) is skipped, so ``weekly.conf`` may say ``config: default``;
* ``branch:`` in a file does not override the branch given by the caller;
* ``tree: path alias`` splits correctly (Dirvish dropped the last character of the path).
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from . import confgrammar as g
from .errors import ConfigError
from .expire_rules import ExpireRule, parse_rule
from .timespec import check_expire_spec, parse_image_time

__all__ = [
    "DEFAULT_MASTER_PATHS", "DEFAULT_RSH", "BOOLEAN_FLAGS", "ExpireRule", "RunallEntry", "MasterConfig",
    "VaultConfig", "load_master", "find_vault_dir", "load_vault",
]

DEFAULT_MASTER_PATHS = (Path("/etc/dervish/master.conf"), Path("/etc/dirvish/master.conf"))
DEFAULT_RSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"

# Dirvish's booleans in Dirvish's summary order, then dervish's extensions.
BOOLEAN_FLAGS: Dict[str, bool] = {
    "permissions": True, "checksum": False, "devices": True, "init": False, "numeric-ids": True,
    "sparse": False, "stats": True, "whole-file": False, "xdev": False, "zxfer": False,
    "acls": True, "xattrs": True,
}
LIST_OPTIONS = ("bank", "exclude", "expire-rule", "rsync-option")
SCALAR_OPTIONS = (
    "vault", "branch", "branch-default", "client", "tree", "config", "file-exclude", "expire", "expire-default",
    "image", "image-default", "image-time", "image-temp", "image-perm", "meta-perm", "index", "log", "reference",
    "speed-limit", "password-file", "rsh", "rsync", "rsync-client", "pre-server", "pre-client", "post-client",
    "post-server", "summary", "rsync-timeout", "metadata",
)
TOOL_LIST_KEYS = ("Runall",)
TOOL_SCALAR_KEYS = ("Runall-jobs", "Dirvish")
MASTER_ONLY = ("Runall", "Runall-jobs")
CHOICES = {
    "index": ("none", "text", "gzip", "bzip2"),
    "log": ("text", "gzip", "bzip2"),
    "summary": ("short", "long"),
}
_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")
_OCTAL_RE = re.compile(r"^0?[0-7]{3,4}$")
CMDLINE = "command line"


# --------------------------------------------------------------------------------------------- values


def _check_octal(value: str) -> int:
    if not _OCTAL_RE.match(value):
        raise ConfigError(f"invalid octal permission {value!r} (expected e.g. 0755)")
    return int(value, 8)


def _check_choice(key: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() not in CHOICES[key]:
            raise ConfigError("invalid {}: {!r} (choose one of {})".format(key, value, ", ".join(CHOICES[key])))
        return value.lower()

    return check


def _check_int(key: str, minimum: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not re.match(r"^\d+$", value) or int(value) < minimum:
            raise ConfigError(f"invalid {key}: {value!r} (expected a whole number >= {minimum})")
        return int(value)

    return check


def _check_speed(value: str) -> str:
    try:
        ok = float(value) > 0
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"invalid speed-limit: {value!r} (expected Mbit/s, e.g. 10 or 2.5)")
    return value


def _check_image_time(value: str) -> str:
    parse_image_time(value, datetime.now())
    return value


def _check_expire(value: str) -> str:
    check_expire_spec(value)
    return value


def split_tree(spec: str) -> Tuple[str, Optional[str]]:
    """``tree:`` value -> (path, alias or None). ``\\ `` escapes a space in either part."""
    tokens = re.findall(r"(?:\\.|[^\s\\])+\\?", spec.strip())
    if not tokens:
        raise ConfigError("empty tree")
    if len(tokens) > 2:
        raise ConfigError(f"tree: {spec!r} has more than a path and an alias (escape spaces as '\\ ')")

    def unescape(tok: str) -> str:
        return re.sub(r"\\(\s)", r"\1", tok)

    return unescape(tokens[0]), (unescape(tokens[1]) if len(tokens) > 1 else None)


def _check_tree(value: str) -> str:
    path, _alias = split_tree(value)
    # a relative tree would be resolved against whatever directory dervish or the remote login starts in
    if not path.startswith(("/", ":")):
        raise ConfigError(f"tree: {path!r} is a relative path (expected an absolute path on the client, e.g. /home)")
    return value


def is_local_client(client: str, server_hostname: Optional[str] = None) -> bool:
    """The client is this machine (``localhost`` or its hostname): its tree is a local path."""
    return client in ("localhost", server_hostname or socket.gethostname())


def check_local_tree(client: str, tree: str) -> None:
    """A local client's tree must be an existing directory (a remote one can be checked only by rsync)."""
    if not is_local_client(client) or tree.startswith(":"):
        return
    path = Path(tree)
    if not path.exists():
        raise ConfigError(f"tree {tree} does not exist on this machine (client {client} is local)")
    if not path.is_dir():
        raise ConfigError(f"tree {tree} is not a directory (expected the directory to back up)")


def check_metadata_command(value: str) -> str:
    """``metadata:``: the client command that prints the restore metadata as JSON. It is run as one
    command line (through ``rsh`` to the client's gate, or locally), so it must split into words."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        words, reason = [], f"{exc}"
    else:
        reason = "empty command"
    if not words or not words[0].strip():
        raise ConfigError(f"invalid metadata: {value!r} ({reason}; expected the client command that prints the "
                          "metadata JSON, e.g. dervish-metadata --json)")
    if words[0].startswith("-"):
        raise ConfigError(f"invalid metadata: {value!r} (starts with an option; expected a command, "
                          "e.g. dervish-metadata --json)")
    return value


def _parse_bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"invalid boolean for {key}: {value!r} (use SET/UNSET or 1/0)")


NAME_RULE = "no '/', whitespace or control characters, not starting with '-' or '#', not '.' or '..'"


def check_name(what: str, name: str, colon: bool = False) -> None:
    """One rule for vault, branch, reference and image names: each is a directory or file name and a
    field of tab-separated lines (``<branch>.hist``, Dirvish's locate output) where a line starting
    with ``#`` is a comment. ``colon`` allows ':' (image names: ``%H:%M``; only vault:branch splits)."""
    if (not name or name in (".", "..") or "/" in name or (":" in name and not colon)
            or name.startswith(("-", "#")) or any(c.isspace() or not c.isprintable() for c in name)):
        rule = NAME_RULE if colon else NAME_RULE.replace("no '/'", "no '/' or ':'")
        raise ConfigError(f"invalid {what} name {name!r} (expected {rule})")


def check_image_name(name: str, pattern: Optional[str] = None, key: str = "image") -> str:
    """An image name (made from ``pattern`` when given): the rule of ``check_name``, and not ``dirvish``."""
    try:
        check_name("image", name, colon=True)
        if name == "dirvish":
            raise ConfigError("invalid image name 'dirvish' (the vault's own configuration directory)")
    except ConfigError as exc:
        if pattern is not None and pattern != name:
            raise ConfigError(f"{exc.message}; made by the {key}: pattern {pattern!r}") from None
        raise
    return name


def _check_image_pattern(key: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        check_image_name(datetime.now().strftime(value), value, key)
        return value

    return check


def check_jobs(value: str) -> int:
    """``Runall-jobs:`` and ``runall --jobs``: a whole number >= 1."""
    return _check_int("Runall-jobs", 1)(str(value).strip())


SCALAR_CHECKS: Dict[str, Callable[[str], object]] = {
    "image-perm": _check_octal,
    "meta-perm": _check_octal,
    "index": _check_choice("index"),
    "log": _check_choice("log"),
    "summary": _check_choice("summary"),
    "rsync-timeout": _check_int("rsync-timeout", 0),
    "Runall-jobs": _check_int("Runall-jobs", 1),
    "speed-limit": _check_speed,
    "image-time": _check_image_time,
    "expire": _check_expire,
    "expire-default": _check_expire,
    "tree": _check_tree,
    "image": _check_image_pattern("image"),
    "image-default": _check_image_pattern("image-default"),
    "metadata": check_metadata_command,
}

# ------------------------------------------------------------------------------------------ dataclasses


@dataclass
class RunallEntry:
    """One ``Runall:`` line: ``vault[:branch] [image_time]``."""

    vault: str
    branch: Optional[str] = None
    image_time: Optional[str] = None
    source: Optional[str] = None


def parse_runall_entry(text: str) -> RunallEntry:
    parts = text.split(None, 1)
    if not parts:
        raise ConfigError("empty Runall entry")
    vault, sep, branch = parts[0].partition(":")
    check_name("vault", vault)
    if branch:
        check_name("branch", branch)
    image_time = parts[1].strip() if len(parts) > 1 else None
    if image_time:
        _check_image_time(image_time)
    return RunallEntry(vault, branch or None, image_time or None)


@dataclass
class _State:
    """Values while loading: scalars -> str, lists -> [(value, origin)], booleans -> bool."""

    values: Dict[str, object] = field(default_factory=dict)
    origins: Dict[str, str] = field(default_factory=dict)
    files: List[Path] = field(default_factory=list)
    client_loaded: bool = False


@dataclass
class MasterConfig:
    """The master configuration. ``state`` holds the master's own settings, the defaults of every vault."""

    path: Path
    confdir: Path
    banks: List[Path]
    runall: List[RunallEntry] = field(default_factory=list)
    jobs: int = 1
    dirvish: Optional[str] = None
    state: _State = field(default_factory=_State, repr=False)

    @property
    def config_files(self) -> List[Path]:
        return list(self.state.files)


@dataclass
class VaultConfig:
    """Effective configuration of one vault:branch. Option names map ``-`` to ``_``.

    ``tree`` is the unescaped source path and ``tree_alias`` the alias (``tree: path alias``);
    ``tree_spec`` keeps the text as written (for the summary). ``options`` holds every option as
    configured, in Dirvish names (lists as lists), for a ``summary: long``.
    """

    vault: str
    branch: str
    bank: Path
    vault_dir: Path
    client: str
    tree: str
    tree_alias: Optional[str] = None
    tree_spec: str = ""
    rsh: str = DEFAULT_RSH
    rsync: str = "rsync"
    rsync_client: Optional[str] = None
    rsync_options: List[str] = field(default_factory=list)
    excludes: List[str] = field(default_factory=list)
    image_default: str = "%Y%m%d%H%M%S"
    image: Optional[str] = None
    image_time: Optional[str] = None
    image_temp: Optional[str] = None
    image_perm: int = 0o755
    meta_perm: Optional[int] = None
    index: str = "gzip"
    log: str = "gzip"
    expire: Optional[str] = None
    expire_default: Optional[str] = None
    expire_rules: List[ExpireRule] = field(default_factory=list)
    reference: Optional[str] = None
    summary_mode: str = "short"
    flags: Dict[str, bool] = field(default_factory=lambda: dict(BOOLEAN_FLAGS))
    speed_limit: Optional[str] = None
    password_file: Optional[str] = None
    rsync_timeout: int = 600
    pre_server: Optional[str] = None
    pre_client: Optional[str] = None
    post_client: Optional[str] = None
    post_server: Optional[str] = None
    metadata: Optional[str] = None
    config_files: List[Path] = field(default_factory=list)
    confdir: Optional[Path] = None
    options: Dict[str, object] = field(default_factory=dict)

    def is_local(self, server_hostname: Optional[str] = None) -> bool:
        """True if the client is this server (``client`` equals the hostname, or ``localhost``)."""
        return is_local_client(self.client, server_hostname)

    def source(self, server_hostname: Optional[str] = None) -> str:
        """rsync source as one argv element: ``tree/`` (local) or ``client:tree/`` (remote)."""
        path = self.tree if self.tree.endswith("/") else self.tree + "/"
        if self.is_local(server_hostname):
            return path
        return f"{self.client}:{path}"


# ---------------------------------------------------------------------------------------------- loading


# rsync options that write into files rsync already has: with --link-dest those are the earlier
# image's own files, so a retry or a resumed transfer would change an image that was backed up.
UNSAFE_RSYNC_OPTIONS = ("--inplace", "--append", "--append-verify", "--write-devices", "--remove-source-files",
                        "--remove-sent-files")


def _check_rsync_options(values: Dict[str, object]) -> None:
    for option, origin in values.get("rsync-option", []):
        name = option.split("=", 1)[0].strip()
        if name in UNSAFE_RSYNC_OPTIONS:
            file, dummy, line = origin.rpartition(":")
            raise ConfigError(f"rsync-option {name} is not allowed: it would write into files that earlier "
                              "images share through hard links", file, int(line) if line.isdigit() else None)


def _known_keys() -> List[str]:
    return list(SCALAR_OPTIONS) + list(LIST_OPTIONS) + list(BOOLEAN_FLAGS) + list(TOOL_LIST_KEYS) + list(
        TOOL_SCALAR_KEYS
    )


def _suggest(key: str) -> str:
    import difflib

    known = _known_keys()
    lowered = {k.lower(): k for k in known}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[match[0]]}:'?)" if match else ""


class _Loader:
    """Applies statements of config files to a ``_State``."""

    def __init__(self, state: _State, confdir: Path, vault_dir: Optional[Path], master: bool):
        self.state = state
        self.confdir = confdir
        self.vault_dir = vault_dir
        self.master = master
        self.stack: List[Path] = []

    # -- files
    def find(self, name: str, relative_to: Optional[Path]) -> Optional[Path]:
        if "/" in name:
            base = Path(name).expanduser()
            if not base.is_absolute() and relative_to is not None:
                base = relative_to / base
            candidates = [base]
        else:
            candidates = []
            if self.vault_dir is not None:
                candidates.append(self.vault_dir / "dirvish" / name)
            candidates.append(self.confdir / name)
        for cand in candidates:
            for p in (cand, cand.with_name(cand.name + ".conf")):
                if p.is_file():
                    return p
        return None

    def load_file(self, path: Path, included_from: Optional[g.Statement] = None) -> None:
        resolved = path.resolve()
        if resolved in self.stack:
            where = included_from.path if included_from is not None else str(self.stack[-1])
            raise ConfigError(
                f"config file loop: {where} includes {path}, which is already being loaded",
                included_from.path if included_from else None,
                included_from.line if included_from else None,
            )
        if resolved in [f.resolve() for f in self.state.files]:
            return
        statements = g.parse_file(path)
        self.state.files.append(path)
        self.stack.append(resolved)
        try:
            for st in statements:
                self.apply(st)
        finally:
            self.stack.pop()

    def include(self, name: str, st: g.Statement, required: bool = True) -> None:
        rel = Path(st.path).parent if st.path and st.path != CMDLINE else None
        path = self.find(name, rel)
        if path is None:
            if not required:
                return
            raise ConfigError(f"cannot find config file {name!r} (looked in {self._where()})", st.path, st.line)
        self.load_file(path, st)

    def _where(self) -> str:
        places = []
        if self.vault_dir is not None:
            places.append(str(self.vault_dir / "dirvish"))
        places.append(str(self.confdir))
        return ", ".join(places)

    # -- statements
    def apply(self, st: g.Statement) -> None:
        try:
            if st.kind == g.SCALAR:
                self.scalar(st.key, st.value, st)
            elif st.kind == g.LIST:
                self.list(st.key, st.items, st)
            elif st.kind in (g.SET, g.UNSET):
                for name in st.items:
                    self.setflag(name, st.kind == g.SET, st)
            elif st.kind == g.RESET:
                self.reset(st.key, st)
        except ConfigError as exc:
            if exc.path is None:
                raise ConfigError(exc.message, st.path, st.line) from None
            raise

    def classify(self, key: str, st: g.Statement) -> Optional[str]:
        """'scalar', 'list', 'bool', or None for an ignored (foreign tool) key."""
        if key in TOOL_LIST_KEYS or key in TOOL_SCALAR_KEYS:
            if key in MASTER_ONLY and not self.master:
                raise ConfigError(f"{key}: belongs in the master configuration")
            return "list" if key in TOOL_LIST_KEYS else "scalar"
        if key[:1].isupper():
            import difflib

            tool = {k.lower(): k for k in TOOL_LIST_KEYS + TOOL_SCALAR_KEYS}
            if difflib.get_close_matches(key.lower(), list(tool), n=1, cutoff=0.8):
                raise ConfigError(f"unknown key '{key}:'{_suggest(key)}")
            return None  # reserved for other tools, ignored like Dirvish does
        if key == "rsync-options":
            raise ConfigError("'rsync-options:' is obsolete; use 'rsync-option:' (one rsync argument per line)")
        if key in LIST_OPTIONS:
            return "list"
        if key in SCALAR_OPTIONS:
            return "scalar"
        if key in BOOLEAN_FLAGS:
            return "bool"
        raise ConfigError(f"unknown key '{key}:'{_suggest(key)}")

    def _origin(self, st: g.Statement, line: Optional[int] = None) -> str:
        return f"{st.path or CMDLINE}:{line or st.line}"

    def scalar(self, key: str, value: str, st: g.Statement) -> None:
        kind = self.classify(key, st)
        if kind is None:
            return
        if kind == "list":
            self.list(key, [value], st)  # single-line list: append the value
            return
        if kind == "bool":
            self.state.values[key] = _parse_bool(key, value)
            self.state.origins[key] = self._origin(st)
            return
        if key == "config":
            self.include(value, st)
            return
        if key == "file-exclude":
            self.file_exclude(value, st)
            return
        check = SCALAR_CHECKS.get(key)
        if check is not None:
            check(value)
        self.state.values[key] = value
        self.state.origins[key] = self._origin(st)
        if key == "client" and not self.state.client_loaded:
            self.state.client_loaded = True
            host = value.rsplit("@", 1)[-1]
            if host and "/" not in host and host not in (".", ".."):
                path = self.confdir / host
                for p in (path, path.with_name(path.name + ".conf")):
                    if p.is_file():
                        self.load_file(p, st)
                        break

    def list(self, key: str, items: List[str], st: g.Statement) -> None:
        kind = self.classify(key, st)
        if kind is None:
            return
        if kind != "list":
            if not items:
                return  # `key:` with nothing: no value, as in Dirvish
            raise ConfigError(f"'{key}:' takes one value, not an indented list")
        lines = st.item_lines if len(st.item_lines) == len(items) else [st.line] * len(items)
        target = self.state.values.setdefault(key, [])
        for item, line in zip(items, lines):
            try:
                if key == "expire-rule":
                    parse_rule(item)
                elif key == "Runall":
                    parse_runall_entry(item)
            except ConfigError as exc:
                raise ConfigError(exc.message, st.path, line) from None
            target.append((item, self._origin(st, line)))

    def setflag(self, name: str, on: bool, st: g.Statement) -> None:
        if name in BOOLEAN_FLAGS:
            self.state.values[name] = on
            self.state.origins[name] = self._origin(st)
            return
        if not on and name in SCALAR_OPTIONS and name not in ("config", "file-exclude"):
            self.state.values.pop(name, None)  # UNSET of a scalar removes its value
            return
        import difflib

        match = difflib.get_close_matches(name, list(BOOLEAN_FLAGS), n=1, cutoff=0.6)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        raise ConfigError(
            "{}: unknown boolean {!r}{}; booleans are {}".format(
                "SET" if on else "UNSET", name, hint, " ".join(BOOLEAN_FLAGS))
        )

    def reset(self, key: str, st: g.Statement) -> None:
        kind = self.classify(key, st)
        if kind is None:
            return
        if kind != "list":
            raise ConfigError("RESET works on lists ({}); use UNSET for '{}'".format(", ".join(LIST_OPTIONS), key))
        self.state.values[key] = []

    def file_exclude(self, name: str, st: g.Statement) -> None:
        path = Path(name).expanduser()
        if not path.is_absolute() and st.path and st.path != CMDLINE:
            path = Path(st.path).parent / path
        text = g.read_text_file(path, "file-exclude file")  # refuses a FIFO: it would hang check and image
        target = self.state.values.setdefault("exclude", [])
        for lineno, line in enumerate(text.splitlines(), 1):
            g.check_line(line, path, lineno)
            line = g.strip_comment(line).strip()
            if line:
                target.append((line, f"{path}:{lineno}"))

    # -- command line
    def override(self, key: str, value: object) -> None:
        st = g.Statement(g.SCALAR, key, path=CMDLINE, line=0)
        try:
            if key.lower() == "reset":
                names = [value] if isinstance(value, str) else list(value or ())
                for name in names:
                    self.reset(str(name).replace("_", "-"), st)
                return
            key = key.replace("_", "-")
            kind = self.classify(key, st)
            if kind == "list":
                items = [value] if isinstance(value, str) else [str(v) for v in (value or ())]
                self.list(key, items, g.Statement(g.LIST, key, items=items, path=CMDLINE))
            elif kind == "bool":
                if value is None:
                    return
                on = value if isinstance(value, bool) else _parse_bool(key, str(value))
                self.setflag(key, bool(on), st)
            elif kind == "scalar":
                if value is None:
                    return
                self.scalar(key, str(value), st)
        except ConfigError as exc:
            raise ConfigError(exc.message, CMDLINE) from None


def _scalar(values: Dict[str, object], key: str, default=None):
    value = values.get(key)
    return default if value is None or value == "" else value


def _items(values: Dict[str, object], key: str) -> List[str]:
    return [v for v, unused_origin in values.get(key, [])]


def load_master(path=None) -> MasterConfig:
    """Load the master configuration (default ``/etc/dervish/master.conf``, else ``/etc/dirvish/master.conf``)."""
    if path is None:
        path = next((p for p in DEFAULT_MASTER_PATHS if p.is_file()), DEFAULT_MASTER_PATHS[0])
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"master configuration {path} not found")
    confdir = path.parent
    state = _State()
    loader = _Loader(state, confdir, None, master=True)
    loader.load_file(path)
    banks = []
    for bank, origin in state.values.get("bank", []):
        p = Path(bank)
        if not p.is_absolute():
            file, sep, line = origin.rpartition(":")
            raise ConfigError(f"bank must be an absolute path: {bank!r}", file, int(line) if line.isdigit() else None)
        banks.append(p)
    if not banks:
        raise ConfigError("no bank: defined", path)
    runall = []
    for text, origin in state.values.get("Runall", []):
        entry = parse_runall_entry(text)
        entry.source = origin
        runall.append(entry)
    jobs = int(_scalar(state.values, "Runall-jobs", 1))
    return MasterConfig(path=path, confdir=confdir, banks=banks, runall=runall, jobs=jobs,
                        dirvish=_scalar(state.values, "Dirvish"), state=state)


def check_vault_file(path) -> None:
    """Check one vault configuration file on its own: grammar, keys, values, and client:/tree: set.

    For provisioning tools, which validate a vault's ``default.conf`` before putting it in place,
    when the bank it belongs in may not even be mounted. ``config:`` includes are looked up next
    to the file. Raises ConfigError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"vault configuration {path} not found")
    state = _State()
    _Loader(state, path.parent, None, master=False).load_file(path)
    for key in ("client", "tree"):
        if not _scalar(state.values, key):
            raise ConfigError(f"no {key}: defined", path)
    try:
        check_local_tree(state.values["client"], split_tree(state.values["tree"])[0])
    except ConfigError as exc:
        raise ConfigError(exc.message, *_origin_of(state, "tree")) from None
    _check_rsync_options(state.values)
    for text, origin in state.values.get("expire-rule", []):
        try:
            parse_rule(text)
        except ConfigError as exc:
            file, sep, line = origin.rpartition(":")
            raise ConfigError(exc.message, file, int(line) if line.isdigit() else None) from None


def _origin_of(state: _State, key: str):
    """(file, line) where ``key`` was last set, for an error message."""
    file, dummy, line = state.origins.get(key, "").rpartition(":")
    return (file or None), (int(line) if line.isdigit() else None)


def find_vault_dir(master: MasterConfig, vault: str) -> Path:
    """The ``<bank>/<vault>`` directory of the first bank (in ``bank:`` order) that holds it."""
    check_name("vault", vault)
    for bank in master.banks:
        candidate = bank / vault
        if candidate.is_dir():
            return candidate
    raise ConfigError("vault {!r} not found in any bank ({})".format(vault, ", ".join(str(b) for b in master.banks)))


def load_vault(master: MasterConfig, vault: str, branch: Optional[str] = None, extra_files=(),
               overrides: Optional[dict] = None) -> VaultConfig:
    """Effective configuration of ``vault`` (``vault:branch`` accepted when ``branch`` is None).

    ``overrides`` maps option names (``-`` or ``_``) to values: str for scalars, list (appended)
    or str for lists, bool for booleans, None to leave alone; key ``reset`` names lists to empty.
    They are applied in dict order after every file, like command-line options.
    """
    if branch is None and ":" in vault:
        vault, branch = vault.split(":", 1)
    if branch is not None:
        check_name("branch", branch)
    vault_dir = find_vault_dir(master, vault)
    state = copy.deepcopy(master.state)
    loader = _Loader(state, master.confdir, vault_dir, master=False)
    start = g.Statement(g.SCALAR, "config", path=None)
    default = loader.find("default", None)
    if default is None:
        raise ConfigError(f"cannot find config file 'default' for vault {vault!r} (looked in {loader._where()})")
    loader.load_file(default)
    if branch and branch != "default":
        path = loader.find(branch, None)
        if path is None:
            raise ConfigError(f"cannot find config file {branch!r} for branch {vault}:{branch} "
                              f"(looked in {loader._where()})")
        loader.load_file(path, start)
    for extra in extra_files:
        path = loader.find(str(extra), Path.cwd())
        if path is None:
            raise ConfigError(f"cannot find config file {str(extra)!r} (looked in {loader._where()})")
        loader.load_file(path)
    for key, value in (overrides or {}).items():
        loader.override(key, value)
    return _build_vault(master, vault, branch, vault_dir, state)


def _build_vault(master: MasterConfig, vault: str, branch: Optional[str], vault_dir: Path, state: _State):
    v = state.values
    files = ", ".join(str(f) for f in state.files)
    for key in ("client", "tree"):
        if not _scalar(v, key):
            raise ConfigError(f"no {key}: defined for vault {vault} (files read: {files})")
    branch = branch or _scalar(v, "branch") or _scalar(v, "branch-default") or "default"
    check_name("branch", branch)
    if _scalar(v, "reference"):
        check_name("reference", _scalar(v, "reference"), colon=True)  # a branch, or an image (%H:%M)
    _check_rsync_options(v)
    tree, alias = split_tree(v["tree"])
    rules = []
    for text, origin in v.get("expire-rule", []):
        rule = parse_rule(text)
        rule.source = origin
        rules.append(rule)
    flags = dict(BOOLEAN_FLAGS)
    for name in BOOLEAN_FLAGS:
        if name in v:
            flags[name] = bool(v[name])
    options: Dict[str, object] = {}
    for key, value in v.items():
        options[key] = [x for x, unused_origin in value] if isinstance(value, list) else value
    meta = _scalar(v, "meta-perm")
    return VaultConfig(
        vault=vault, branch=branch, bank=vault_dir.parent, vault_dir=vault_dir,
        client=v["client"], tree=tree, tree_alias=alias, tree_spec=v["tree"],
        rsh=_scalar(v, "rsh", DEFAULT_RSH), rsync=_scalar(v, "rsync", "rsync"),
        rsync_client=_scalar(v, "rsync-client"), rsync_options=_items(v, "rsync-option"),
        excludes=_items(v, "exclude"), image_default=_scalar(v, "image-default", "%Y%m%d%H%M%S"),
        image=_scalar(v, "image"), image_time=_scalar(v, "image-time"), image_temp=_scalar(v, "image-temp"),
        image_perm=_check_octal(_scalar(v, "image-perm", "0755")),
        meta_perm=_check_octal(meta) if meta else None,
        index=_scalar(v, "index", "gzip").lower(), log=_scalar(v, "log", "gzip").lower(),
        expire=_scalar(v, "expire"), expire_default=_scalar(v, "expire-default"), expire_rules=rules,
        reference=_scalar(v, "reference"), summary_mode=_scalar(v, "summary", "short").lower(),
        flags=flags, speed_limit=_scalar(v, "speed-limit"), password_file=_scalar(v, "password-file"),
        rsync_timeout=int(_scalar(v, "rsync-timeout", 600)),
        pre_server=_scalar(v, "pre-server"), pre_client=_scalar(v, "pre-client"),
        post_client=_scalar(v, "post-client"), post_server=_scalar(v, "post-server"),
        metadata=_scalar(v, "metadata"),
        config_files=list(state.files), confdir=master.confdir, options=options,
    )
