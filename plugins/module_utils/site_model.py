"""The backup site as the inventory describes it: which server backs up which client's vaults.

Shared by the ``validate_site`` action (checks every host before anything changes) and the
``client_vaults`` / ``server_vaults`` filters (what the roles write). Works on plain mappings of
inventory variables, so it is tested without Ansible's machinery.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import UNSAFE_RSYNC_OPTIONS

SERVERS_GROUP = "backup_servers"
CLIENTS_GROUP = "backup_clients"
VAULT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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

    def as_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        for key in ("excludes", "rsync_options", "expire_rules"):
            data[key] = list(data[key])
        return data


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


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def client_address(client: str, client_vars: Mapping[str, Any]) -> str:
    return _text(client_vars.get("backup_client_address")) or _text(client_vars.get("ansible_host")) or client


def client_vaults(client: str, client_vars: Mapping[str, Any]) -> List[Vault]:
    """The client's vaults, explicit or one per listed filesystem, with the site-wide excludes."""
    address = client_address(client, client_vars)
    explicit = client_vars.get("backup_client_vaults") or []
    if explicit:
        raw = [dict(item) for item in explicit]
    else:
        filesystems = client_vars.get("backup_client_filesystems") or ["/"]
        raw = [{"name": default_vault_name(client, fs), "tree": fs} for fs in filesystems]
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


def _check_vault_fields(client: str, vaults: Sequence[Mapping[str, Any]], report: SiteReport) -> None:
    for index, vault in enumerate(vaults):
        where = f"{client}: backup_client_vaults[{index}]"
        name = str(vault.get("name", ""))
        if not VAULT_NAME_RE.match(name):
            report.add(f"{where}.name {name!r} is not a valid vault name (letters, digits, '.', '_', '-')")
        tree = str(vault.get("tree", ""))
        if not tree.startswith("/"):
            report.add(f"{where}.tree {tree!r} is not an absolute path")
        for option in vault.get("rsync_options") or []:
            if str(option).split("=", 1)[0].strip() in UNSAFE_RSYNC_OPTIONS:
                report.add(f"{where}.rsync_options: {option} is not allowed: it would write into files that "
                           "earlier images share through hard links")
        for key in ("tree", "excludes", "rsync_options", "expire_rules"):
            values = vault.get(key) or []
            for value in [values] if isinstance(values, str) else values:
                if "\n" in str(value) or "\r" in str(value):
                    report.add(f"{where}.{key}: {value!r} spans several lines")


def validate_site(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
                  client_spec: Mapping[str, Any], server_spec: Mapping[str, Any]) -> List[str]:
    """Every inventory mistake of the site, one message each (empty list: the site is sound)."""
    report = SiteReport()
    servers = list(groups.get(SERVERS_GROUP, []))
    clients = list(groups.get(CLIENTS_GROUP, []))
    for server in servers:
        checked = _check_variables(server, hostvars[server], "backup_server_", server_spec, report)
        if checked is None:
            continue
        drive = checked.get("backup_server_drive") or {}
        mount_point = drive.get("mount_point") if (drive.get("label") or drive.get("uuid")) else None
        for bank in checked.get("backup_server_banks") or []:
            if not str(bank).startswith("/"):
                report.add(f"{server}: backup_server_banks: {bank!r} is not an absolute path")
            elif mount_point and not str(bank).startswith(mount_point.rstrip("/") + "/"):
                report.add(f"{server}: backup_server_banks: {bank!r} is not below the drive's mount point "
                           f"{mount_point!r} (backup_server_drive.mount_point)")
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
        _check_vault_fields(client, checked.get("backup_client_vaults") or [], report)
        for path in checked.get("backup_client_filesystems") or []:
            if not str(path).startswith("/"):
                report.add(f"{client}: backup_client_filesystems: {path!r} is not an absolute path")
        for path in checked.get("backup_client_exclude_paths") or []:
            if not str(path).startswith("/"):
                report.add(f"{client}: backup_client_exclude_paths: {path!r} is not an absolute path")
        if len(report.errors) > errors_before:
            continue
        for vault in client_vaults(client, checked):
            owner = vault_owner.get((server, vault.name))
            if owner is not None:
                where = "twice in its backup_client_vaults" if owner == client else f"also a vault of {owner}"
                report.add(f"{client}: vault {vault.name!r} (backup_client_vaults) is {where}; "
                           f"vault names must be unique on server {server}")
            vault_owner[(server, vault.name)] = client
    return report.errors
