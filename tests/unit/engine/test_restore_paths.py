"""restore: path safety, the transfer plan (in place, under another directory, a root inside the tree),
versions across images, and a real local restore (dervish restore) keeping metadata."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dervish_engine import cli
from dervish_engine.restore import (
    RestoreError,
    Transfer,
    is_change,
    plan,
    relative_path,
    restore_local,
    rsync_argv,
    versions,
)
from dervish_engine.select import select_image


def make_image(vault: Path, name: str, begin: str, tree: str = "/home", status: str = "success") -> Path:
    img = vault / name
    (img / "tree").mkdir(parents=True)
    (img / "summary").write_text(
        f"client: laptop1\ntree: {tree}\nvault: {vault.name}\nbranch: default\nImage: {name}\nImage-now: {begin}\n"
        f"Expire: Never\n\nACTION: rsync\nBackup-begin: {begin}\nBackup-complete: {begin}\nStatus: {status}\n")
    return img / "tree"


@pytest.mark.parametrize("path, rel", [
    ("/home/alice/doc.txt", "alice/doc.txt"), ("/home//alice/./doc.txt/", "alice/doc.txt"), ("/home", "."),
    ("alice/doc.txt", "alice/doc.txt"), ("./alice", "alice"),
])
def test_relative_paths(path, rel):
    assert relative_path(path, "/home") == rel


@pytest.mark.parametrize("path, why", [
    ("/home/../etc/shadow", "'..' is not allowed"), ("alice/../../etc", "'..' is not allowed"),
    ("/etc/passwd", "outside the vault's tree /home"), ("/homework/x", "outside the vault's tree /home"),
    ("a\0b", "NUL"), ("", "empty"),
])
def test_unsafe_paths_are_refused(path, why):
    with pytest.raises(RestoreError, match=why.replace("(", r"\(")):
        relative_path(path, "/home")


def test_a_symlink_in_the_image_is_never_followed(tmp_path):
    tree = make_image(tmp_path / "v", "i1", "2026-12-01 04:00:00")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("no")
    (tree / "alice").symlink_to(tmp_path / "outside")
    with pytest.raises(RestoreError, match="alice is a symlink in the image"):
        plan(tree, "/home", ["alice/secret"], "/home", "/home")
    # the link itself may be restored, as a link
    assert plan(tree, "/home", ["alice"], "/home", "/home") == [Transfer("", ("alice",), ".")]


def test_plan_in_place_under_another_directory_and_inside_the_tree(tmp_path):
    tree = make_image(tmp_path / "v", "i1", "2026-12-01 04:00:00")
    (tree / "alice" / "projects").mkdir(parents=True)
    (tree / "alice" / "doc.txt").write_text("x")
    rels = ["alice/doc.txt", "alice/projects"]
    # in place with the whole tree as root; under /srv/r (the tree's place is /srv/r/home)
    assert plan(tree, "/home", rels, "/home", "/home") == [Transfer("", ("alice/doc.txt", "alice/projects/"), ".")]
    assert plan(tree, "/home", rels, "/srv/r/home", "/srv/r") == [
        Transfer("", ("alice/doc.txt", "alice/projects/"), "home")]
    # in place, the rrsync root limited to /home/alice: names start there
    assert plan(tree, "/home", rels, "/home", "/home/alice") == [Transfer("alice", ("doc.txt", "projects/"), ".")]
    # a root above the tree (two vaults in one run): the tree's place below it
    assert plan(tree, "/home", rels, "/home", "/") == [Transfer("", ("alice/doc.txt", "alice/projects/"), "home")]
    with pytest.raises(RestoreError, match="not below the target directory /home/bob"):
        plan(tree, "/home", rels, "/home", "/home/bob")
    with pytest.raises(RestoreError, match="/home/alice/nothing is not in the image i1"):
        plan(tree, "/home", ["alice/nothing"], "/home", "/home")


def test_rsync_command(tmp_path):
    argv = rsync_argv("/b/v/i/tree", Transfer("alice", ("doc.txt", "projects/"), "."), "laptop1:", delete=True,
                      dry_run=True, rsh="ssh -i k")
    assert argv == ["rsync", "-aHAX", "--numeric-ids", "--relative", "--itemize-changes", "--mkpath", "--delete",
                    "--dry-run", "-e", "ssh -i k", "/b/v/i/tree/alice/./doc.txt", "/b/v/i/tree/alice/./projects/",
                    "laptop1:"]
    assert rsync_argv("/t", Transfer("", ("a",), "home"), "/srv/r")[-2:] == ["/t/./a", "/srv/r/home/"]


def test_itemized_change_lines():
    assert is_change(">f+++++++++ a") and is_change("*deleting   a") and is_change(".d..t...... ./")
    assert not is_change(".d          ./") and not is_change("created directory x") and not is_change(".f......... a")


def test_versions_tell_changed_from_unchanged(tmp_path, capsys):
    vault = tmp_path / "bank" / "laptop1-home"
    t1 = make_image(vault, "i1", "2026-12-01 04:00:00")
    t2 = make_image(vault, "i2", "2026-12-02 04:00:00")
    t3 = make_image(vault, "i3", "2026-12-03 04:00:00")
    make_image(vault, "i4", "2026-12-04 04:00:00", status="error (23)")
    for tree in (t1, t2, t3):
        (tree / "alice").mkdir()
    (t1 / "alice" / "doc.txt").write_text("one")
    os.link(t1 / "alice" / "doc.txt", t2 / "alice" / "doc.txt")
    (t3 / "alice" / "doc.txt").write_text("three!")
    found = versions(vault, "/home/alice/doc.txt")
    assert [(v.image, v.size, v.same_as_newer) for v in found.versions] == [
        ("i3", 6, None), ("i2", 3, False), ("i1", 3, True)]
    assert found.path == "/home/alice/doc.txt" and found.images_searched == 3
    (vault / "dirvish").mkdir()
    master = tmp_path / "master.conf"
    master.write_text(f"bank: {vault.parent}\n")
    assert cli.main(["--config", str(master), "versions", "laptop1-home", "alice/doc.txt"]) == 0
    out = capsys.readouterr().out
    assert "/home/alice/doc.txt in vault laptop1-home: 3 of 3 good images" in out and "i2" in out
    assert cli.main(["--config", str(master), "versions", "laptop1-home", "/home/alice/none"]) == 1
    assert cli.main(["--config", str(master), "versions", "laptop1-home", "/etc/x"]) == 2
    assert "outside the vault's tree /home" in capsys.readouterr().err


def _meta(path: Path) -> tuple:
    st = os.lstat(path)
    return (oct(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime), st.st_nlink if not path.is_dir() else 0)


def test_restore_locally_keeps_metadata_and_other_files(tmp_path, capsys):
    vault = tmp_path / "bank" / "laptop1-home"
    (vault / "dirvish").mkdir(parents=True)
    tree = make_image(vault, "i1", "2026-12-01 04:00:00")
    proj = tree / "alice" / "projects"
    proj.mkdir(parents=True)
    (proj / "a.txt").write_text("a")
    os.link(proj / "a.txt", proj / "hard.txt")
    (proj / "link").symlink_to("a.txt")
    os.chown(proj / "a.txt", 1234, 4321)
    os.chmod(proj / "a.txt", 0o640)
    os.utime(proj / "a.txt", (1_000_000_000, 1_000_000_000))
    subprocess.run(["setfattr", "-n", "user.note", "-v", "kept", str(proj / "a.txt")], check=True)
    subprocess.run(["setfacl", "-m", "u:4242:r", str(proj / "a.txt")], check=True)
    image = select_image(vault)
    to = tmp_path / "restored"
    (to / "home" / "alice" / "projects").mkdir(parents=True)
    (to / "home" / "alice" / "projects" / "mine.txt").write_text("kept unless --delete")
    result = restore_local(image, ["/home/alice/projects"], str(to), dry_run=True)
    assert ">f+++++++++ alice/projects/hard.txt" in result.changes and not (to / "home/alice/projects/a.txt").exists()
    restore_local(image, ["/home/alice/projects"], str(to))
    got = to / "home" / "alice" / "projects"
    for name in ("a.txt", "hard.txt", "link"):
        assert _meta(got / name) == _meta(proj / name), name
    assert os.readlink(got / "link") == "a.txt" and (got / "a.txt").stat().st_ino == (got / "hard.txt").stat().st_ino
    assert subprocess.run(["getfattr", "-n", "user.note", "--only-values", str(got / "a.txt")],
                          capture_output=True, text=True, check=True).stdout == "kept"
    assert "user:4242:r--" in subprocess.run(["getfacl", "-p", str(got / "a.txt")], capture_output=True,
                                             text=True, check=True).stdout
    assert (got / "mine.txt").exists()
    # nothing left to do; then --delete through the command line removes what the image lacks
    assert not restore_local(image, ["/home/alice/projects"], str(to)).changed
    master = tmp_path / "master.conf"
    master.write_text(f"bank: {vault.parent}\n")
    assert cli.main(["--config", str(master), "restore", "laptop1-home", "alice/projects", "--to", str(to),
                     "--delete"]) == 0
    assert "*deleting   alice/projects/mine.txt" in capsys.readouterr().out and not (got / "mine.txt").exists()
    assert cli.main(["--config", str(master), "restore", "laptop1-home", "../x", "--to", str(to)]) == 2
    assert cli.main(["--config", str(master), "restore", "laptop1-home", "alice", "--to", str(to),
                     "--image", "2020-01-01"]) == 2
    assert "no good image began at or before 2020-01-01 23:59:59" in capsys.readouterr().err
