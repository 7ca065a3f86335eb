"""How expire deletes a tree: GNU rm -rf at the lowest CPU and I/O priority, never into a filesystem
mounted inside an image, read-only directories made writable for a second try."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from dervish_engine.expire import _make_writable, removal_argv, remove_tree


def test_the_removal_is_rm_at_the_lowest_priority():
    assert removal_argv("/b/v/img/tree", which=lambda tool: f"/usr/bin/{tool}") == [
        "nice", "-n", "19", "ionice", "-t", "-c", "2", "-n", "7", "/usr/bin/rm", "-rf", "--one-file-system", "--",
        "/b/v/img/tree"]
    assert removal_argv("/t", which=lambda tool: "/bin/rm" if tool == "rm" else None) == [
        "/bin/rm", "-rf", "--one-file-system", "--", "/t"]
    assert removal_argv("/t", which=lambda tool: None) is None   # then Python's rmtree


def test_read_only_directories_are_made_writable_on_their_filesystem_only(tmp_path):
    top = tmp_path / "tree"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b").chmod(0o000)
    (top / "a").chmod(0o500)
    top.chmod(0o555)
    _make_writable(top)
    for path in (top, top / "a", top / "a" / "b"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o700 == 0o700, path


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_filesystem_mounted_inside_a_tree_is_never_removed(tmp_path):
    tree = tmp_path / "img" / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("copy\n")
    mnt = tree / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "dervish-test", str(mnt)], check=True)
    try:
        (mnt / "precious").write_text("not part of the image\n")
        with pytest.raises(OSError, match=r"not removed: rm exited 1: .*mnt"):
            remove_tree(tree)
        assert (mnt / "precious").read_text() == "not part of the image\n"
        assert not (tree / "etc").exists()    # the image's own files went
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    remove_tree(tree)
    assert not tree.exists()


def test_a_tree_a_symlink_and_a_missing_path(tmp_path):
    (tmp_path / "t" / "d").mkdir(parents=True)
    (tmp_path / "t" / "d" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    (tmp_path / "t" / "link").symlink_to(outside)
    remove_tree(tmp_path / "t")
    assert not (tmp_path / "t").exists() and (outside / "keep").read_text() == "k"
    remove_tree(tmp_path / "missing")
    (tmp_path / "alink").symlink_to(outside)
    remove_tree(tmp_path / "alink")
    assert not os.path.lexists(tmp_path / "alink") and Path(outside / "keep").exists()
