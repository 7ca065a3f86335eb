"""Issue 8: every vault of a client asks for its restore metadata (``metadata: dervish-metadata --json``)
and the client's gate allows exactly that command, unless ``backup_client_metadata`` is false.

The roles' templates are rendered here as Ansible renders them, then judged by the parsers that read
them on the hosts: the engine's vault-file check and the gate's own config parser and decision.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import jinja2
import pytest
import yaml

from ansible_collections.dervish.backup.plugins.module_utils import dervish_gate as gate
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import check_vault_file
from ansible_collections.dervish.backup.plugins.module_utils.site_model import (
    METADATA_COMMAND,
    client_vaults,
    validate_site,
    vault_config_lines,
)

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "roles"
VAULT_TEMPLATE = ROLES / "backup_server" / "templates" / "etc" / "dervish" / "vaults" / "vault.conf.j2"
GATE_TEMPLATE = ROLES / "backup_client" / "templates" / "etc" / "dervish" / "gate.conf.j2"


def spec(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]


def client_defaults() -> dict:
    return yaml.safe_load((ROLES / "backup_client" / "defaults" / "main.yml").read_text())


def client_vars() -> dict:
    return yaml.safe_load((ROLES / "backup_client" / "vars" / "main.yml").read_text())


def render(template: Path, **variables) -> str:
    env = jinja2.Environment(keep_trailing_newline=True, trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["quote"] = shlex.quote
    env.filters["bool"] = bool
    env.filters["flatten"] = lambda lists: [item for sub in lists for item in sub]
    return env.from_string(template.read_text()).render(ansible_managed="managed", **variables)


def check(hostvars: dict) -> list[str]:
    groups = {"backup_servers": ["backup"], "backup_clients": [h for h in hostvars if h != "backup"]}
    hostvars.setdefault("backup", {}).setdefault("ansible_host", "192.0.2.10")
    return validate_site(hostvars, groups, spec("backup_client"), spec("backup_server"))


def test_the_role_default_is_on_and_documented() -> None:
    assert client_defaults()["backup_client_metadata"] is True
    option = spec("backup_client")["backup_client_metadata"]
    assert option["type"] == "bool" and option["default"] is True and option["description"]


@pytest.mark.parametrize(("value", "expected"), [(None, METADATA_COMMAND), (True, METADATA_COMMAND), (False, "")])
def test_every_vault_of_the_client_gets_the_command(value, expected: str) -> None:
    host_vars = {"backup_client_filesystems": ["/", "/home"]}
    if value is not None:
        host_vars["backup_client_metadata"] = value
    vaults = client_vaults("laptop1", host_vars)
    assert [v.metadata for v in vaults] == [expected, expected]
    assert all(v.as_dict()["metadata"] == expected for v in vaults)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_rendered_vault_config_is_what_the_engine_accepts(tmp_path: Path, enabled: bool) -> None:
    vault = client_vaults("laptop1", {"backup_client_metadata": enabled})[0]
    text = render(VAULT_TEMPLATE, item=vault.as_dict())
    assert ("metadata: dervish-metadata --json\n" in text) is enabled
    assert "metadata" not in text or enabled
    path = tmp_path / "laptop1-root.conf"
    path.write_text(text)
    cfg = check_vault_file(path)
    assert getattr(cfg, "metadata", None) == (METADATA_COMMAND if enabled else None) or not hasattr(cfg, "metadata")
    # validate_site checks the lines the template writes
    written = vault_config_lines(vault, "backup_client_filesystems[0]", "backup_client_default_excludes")
    lines = [line for line, dummy in written]
    assert ("metadata: dervish-metadata --json" in lines) is enabled


def gate_config(tmp_path: Path, enabled: bool) -> gate.GateConfig:
    variables = {**client_defaults(), "backup_client_metadata": enabled,
                 "__backup_client_vaults": [v.as_dict() for v in client_vaults("laptop1", {})],
                 "__backup_client_server": "backup",
                 "__backup_client_metadata": client_vars()["__backup_client_metadata"]}
    text = render(GATE_TEMPLATE, **variables)
    path = tmp_path / "gate.conf"
    path.write_text(text)
    return gate.parse_config(text, str(path))


def test_the_gate_allows_exactly_what_the_engine_sends(tmp_path: Path) -> None:
    config = gate_config(tmp_path, True)
    decision = gate.decide(config, METADATA_COMMAND)  # the engine sends the vault's metadata: value as is
    assert decision.allowed and decision.argv == ("/usr/local/sbin/dervish-metadata", "--json")
    for other in ("dervish-metadata --help", "dervish-metadata --json --x", "dervish-metadata; id"):
        assert not gate.decide(config, other).allowed, other


def test_turned_off_the_gate_refuses_it(tmp_path: Path) -> None:
    config = gate_config(tmp_path, False)
    assert not gate.decide(config, METADATA_COMMAND).allowed


def test_validate_site_accepts_metadata_on_and_off() -> None:
    assert check({"laptop1": {}, "laptop2": {"backup_client_metadata": False}}) == []


def test_validate_site_names_a_bad_value_and_a_clash() -> None:
    problems = check({"laptop1": {"backup_client_metadata": "sometimes"}})
    assert any(p.startswith("laptop1: ") and "backup_client_metadata" in p for p in problems), problems
    problems = check({"laptop1": {"backup_client_gate_commands": {"dervish-metadata": "/opt/md"}}})
    assert problems == ["laptop1: backup_client_metadata: command 'dervish-metadata' is defined twice"], problems
    assert check({"laptop1": {"backup_client_metadata": False,
                              "backup_client_gate_commands": {"dervish-metadata": "/opt/md"}}}) == []
