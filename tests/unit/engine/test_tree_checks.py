"""``tree:`` is checked where it can be: relative is always wrong, a local tree must be a directory (item 7)."""

from __future__ import annotations

import socket

import pytest

from dervish_engine import cli
from dervish_engine.config import check_vault_file, load_master, load_vault
from dervish_engine.errors import ConfigError


def conf(tmp_path, client, tree):
    path = tmp_path / "v1.conf"
    path.write_text(f"client: {client}\ntree: {tree}\n")
    return path


@pytest.mark.parametrize("client", ["localhost", "laptop1"])
@pytest.mark.parametrize("tree", ["home", "./etc", "srv/data alias"])
def test_relative_tree_is_an_error_for_any_client(tmp_path, client, tree):
    path = conf(tmp_path, client, tree)
    with pytest.raises(ConfigError, match=r"v1\.conf:2: tree: '.*' is a relative path \(expected an absolute path"):
        check_vault_file(path)


@pytest.mark.parametrize("client", ["localhost", socket.gethostname()])
def test_local_tree_that_does_not_exist_or_is_a_file(tmp_path, client):
    with pytest.raises(ConfigError, match=r"v1\.conf:2: tree /nonexistent/x does not exist on this machine"):
        check_vault_file(conf(tmp_path, client, "/nonexistent/x"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"v1\.conf:2: tree .*/file is not a directory"):
        check_vault_file(conf(tmp_path, client, tmp_path / "file"))
    check_vault_file(conf(tmp_path, client, tmp_path))


def test_remote_tree_is_not_checked_here(tmp_path):
    check_vault_file(conf(tmp_path, "laptop1", "/nonexistent/x"))


def test_check_file_prints_one_line_and_exits_2(tmp_path, capsys):
    path = conf(tmp_path, "localhost", "/nonexistent/x")
    assert cli.main(["check", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"dervish: {path}:2: tree /nonexistent/x does not exist on this machine (client localhost is local)\n"


def test_image_of_a_missing_local_tree_creates_nothing(tmp_path, capsys):
    bank = tmp_path / "bank"
    (bank / "v1" / "dirvish").mkdir(parents=True)
    (bank / "v1" / "dirvish" / "default.conf").write_text("client: localhost\ntree: /nonexistent/x\n")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    assert load_vault(load_master(master), "v1").tree == "/nonexistent/x"
    assert cli.main(["--config", str(master), "image", "v1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vault v1: tree /nonexistent/x does not exist on this machine" in err
    assert sorted(p.name for p in (bank / "v1").iterdir()) == ["dirvish"]
