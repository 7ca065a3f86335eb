"""What the collection claims (platforms, ansible-core versions) is what the test suite runs on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES = ("backup_server", "backup_client")


def os_release(root: Path = Path("/")) -> dict[str, str]:
    text = (root / "etc" / "os-release").read_text()
    return dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', text, re.M))


def oldest_core_in_makefile() -> str:
    return re.search(r"^OLDEST_CORE\s*:=\s*(\S+)", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)


@pytest.mark.parametrize("role", ROLES)
def test_roles_claim_only_the_platform_the_lab_runs(role: str) -> None:
    # the lab hosts run on this machine's root filesystem: it is the one platform the suite tests
    release = os_release()
    meta = yaml.safe_load((REPO_ROOT / "roles" / role / "meta" / "main.yml").read_text())
    claimed = {(p["name"], v) for p in meta["galaxy_info"]["platforms"] for v in p["versions"]}
    assert claimed == {(release["NAME"].split()[0], release["VERSION_CODENAME"])}


@pytest.mark.parametrize("role", ROLES)
def test_roles_and_collection_name_the_oldest_tested_core(role: str) -> None:
    oldest = oldest_core_in_makefile()
    runtime = yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == f">={oldest}.0"
    meta = yaml.safe_load((REPO_ROOT / "roles" / role / "meta" / "main.yml").read_text())
    assert meta["galaxy_info"]["min_ansible_version"] == oldest
