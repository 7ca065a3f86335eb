"""restore.yml's resolver: each client path goes to the vault whose tree holds it (the longest tree)."""

from __future__ import annotations

import pytest

from ansible_collections.dervish.backup.plugins.action.restore import resolve_items
from ansible_collections.dervish.backup.plugins.module_utils.site_model import SiteError, vault_of_path

VARS = {"backup_client_vaults": [{"name": "l-root", "tree": "/"}, {"name": "l-home", "tree": "/home"},
                                 {"name": "l-homework", "tree": "/homework"}]}


@pytest.mark.parametrize("path, vault", [("/home/alice/doc.txt", "l-home"), ("/home", "l-home"),
                                         ("/homework/x", "l-homework"), ("/etc/ssh", "l-root"), ("/", "l-root")])
def test_the_longest_tree_holding_the_path(path, vault):
    assert vault_of_path("l", VARS, path).name == vault


def test_a_named_vault_must_hold_the_path():
    assert vault_of_path("l", VARS, "/home/alice", "l-root").name == "l-root"
    with pytest.raises(SiteError, match=r"'/etc/x' is in no tree of the vault l-home: l-home \(/home\)"):
        vault_of_path("l", VARS, "/etc/x", "l-home")
    with pytest.raises(SiteError, match="'nope' is not a vault of l"):
        vault_of_path("l", VARS, "/etc/x", "nope")


@pytest.mark.parametrize("path, why", [("home/x", "is not absolute"), ("/home/../etc", "'..'"), ("", "empty")])
def test_bad_paths_name_the_variable(path, why):
    with pytest.raises(SiteError, match=f"l: dervish_restore_paths: .*{why}"):
        vault_of_path("l", VARS, path)


def test_resolve_items_needs_paths():
    assert resolve_items("l", {"l": VARS}, ["/home/a", "/etc/b"]) == [
        {"path": "/home/a", "vault": "l-home"}, {"path": "/etc/b", "vault": "l-root"}]
    with pytest.raises(SiteError, match="dervish_restore_paths is empty"):
        resolve_items("l", {"l": VARS}, [])
