"""The collection artifact: `ansible-galaxy collection build` gives a clean tarball that installs and documents.

No lab: this builds from the checkout (with whatever venvs, labs and caches lie around in it), installs
the tarball into a scratch collections path and reads the docs from there, as a user of the artifact would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

# Top-level entries of the artifact; anything else (lab, scripts, benchmarks, tests, venvs, ...) is a leak.
SHIPPED = {"COPYING", "README.md", "FILES.json", "MANIFEST.json", "changelogs", "inventory", "meta",
           "playbooks", "plugins", "roles"}
NEVER_SHIPPED = ("lab/", "scripts/", "benchmarks/", "tests/", "extensions/", "collections/", "inventory/lab/",
                 ".venv", ".lab", ".ansible/", ".ci/", "Makefile", "pyproject.toml", "ansible.cfg")


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, cwd=cwd, text=True, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the collection, install it into a scratch path; the tarball, its members and the env to use it."""
    work = tmp_path_factory.mktemp("collection")
    config = work / "ansible.cfg"
    config.write_text("[defaults]\n")  # not the checkout's, whose collections_path is the checkout itself
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(config), "ANSIBLE_HOME": str(work / "home"),
           "ANSIBLE_COLLECTIONS_PATH": str(work / "installed"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
           "ANSIBLE_NOCOLOR": "1"}
    run(["ansible-galaxy", "collection", "build", "--output-path", str(work / "dist"), str(REPO_ROOT)], env, work)
    tarballs = list((work / "dist").glob("dervish-backup-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    run(["ansible-galaxy", "collection", "install", "--offline", "-p", str(work / "installed"), str(tarballs[0])],
        env, work)
    with tarfile.open(tarballs[0]) as tar:
        members = tar.getnames()
    return {"tarball": tarballs[0], "members": members, "env": env, "work": work,
            "installed": work / "installed" / "ansible_collections" / "dervish" / "backup"}


def test_artifact_holds_only_what_a_user_needs(artifact: dict) -> None:
    members = artifact["members"]
    top = {name.split("/", 1)[0] for name in members}
    assert top == SHIPPED
    leaks = [name for name in members if any(name == p.rstrip("/") or name.startswith(p) for p in NEVER_SHIPPED)]
    assert leaks == []
    assert "playbooks/site.yml" in members and "playbooks/lab_hosts.yml" not in members
    assert "inventory/example/hosts.yml" in members
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in members)


def test_artifact_carries_the_license_text(artifact: dict) -> None:
    copying = (artifact["installed"] / "COPYING").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in copying and "Version 3, 29 June 2007" in copying
    manifest = yaml.safe_load((artifact["installed"] / "MANIFEST.json").read_text())
    info = manifest["collection_info"]
    assert info["license"] == ["GPL-3.0-or-later"]
    # no placeholder addresses: the project has no public repository or tracker yet
    assert not any(info[key] for key in ("repository", "documentation", "homepage", "issues"))


def test_installed_module_is_documented(artifact: dict) -> None:
    doc = run(["ansible-doc", "-t", "module", "dervish.backup.logrotate_dateext"], artifact["env"], artifact["work"])
    assert "dateext" in doc.stdout
    assert str(artifact["installed"]) in doc.stdout  # read from the installed copy, not the checkout


@pytest.mark.parametrize("role", ["backup_server", "backup_client"])
def test_installed_role_is_documented(artifact: dict, role: str) -> None:
    doc = run(["ansible-doc", "-t", "role", f"dervish.backup.{role}"], artifact["env"], artifact["work"])
    assert f"{role}_" in doc.stdout  # the role's documented variables
    assert str(artifact["installed"]) in doc.stdout


def test_installed_playbook_is_listed(artifact: dict) -> None:
    tasks = run(["ansible-playbook", "--list-tasks", "-i", "localhost,", "dervish.backup.site"],
                artifact["env"], artifact["work"])
    assert "dervish.backup.backup_server" in tasks.stdout or "backup_server" in tasks.stdout
