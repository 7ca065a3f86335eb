"""Local images with real rsync: layout, summary, hist, hard links, metadata, hooks, references."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess

import pytest

from dervish_engine.summary import parse_summary


@pytest.fixture
def tree(tmp_path, tree_factory):
    return tree_factory(tmp_path / "source tree", files=2000)


def image_dirs(vault):
    return sorted(p for p in vault.iterdir() if p.name != "dirvish" and p.is_dir())


def walk(root):
    """{relative bytes path: (kind, payload)} of a tree (payload = content, link target or '')."""
    out = {}
    broot = os.fsencode(str(root))
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, broot)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", b"")
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo", b"")
            else:
                with open(full, "rb") as fh:
                    out[rel] = ("file", fh.read())
    return out


def summary_of(image):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape"))


def test_first_and_second_image(bank, tree):
    vault = bank.vault("v1", tree, "expire-default: +15 days\nexclude:\n\t*.tmp\n")
    (tree / "junk.tmp").write_text("excluded\n")
    first = bank.run("image", "v1", "--image", "first", check=0)
    assert "initialising vault v1" in first.stderr
    img1 = vault / "first"
    names = sorted(p.name for p in img1.iterdir())
    assert names == ["index.gz", "log.gz", "summary", "tree"]
    assert stat.S_IMODE(img1.stat().st_mode) == 0o755
    s1 = summary_of(img1)
    assert s1.status == "success"
    assert s1.reference == "default"
    assert "init" in s1.set_flags
    assert s1.expire.startswith("+15 days == ")
    assert "--link-dest" not in s1.action
    text = (img1 / "summary").read_text()
    keys = [line.split(":")[0] for line in text.splitlines() if ":" in line and not line.startswith("\t")]
    assert keys[:11] == ["client", "tree", "rsh", "Server", "Bank", "vault", "branch", "Image", "Reference",
                         "Image-now", "Expire"]
    assert text.splitlines()[-1] == "Status: success"

    # every entry copied, excluded file left out; odd names, links and fifo intact
    src = walk(tree)
    del src[b"junk.tmp"]
    assert walk(img1 / "tree") == src
    assert os.lstat(img1 / "tree" / "fifo").st_mode & stat.S_IFIFO
    odd = img1 / "tree" / "odd dir"
    assert os.stat(odd / "with space.txt").st_ino == os.stat(odd / "hardlink to space").st_ino
    acl = subprocess.run(["getfacl", "-c", str(img1 / "tree" / "acl-file")], capture_output=True, text=True,
                         check=False)
    assert "user:nobody:r--" in acl.stdout
    xattr = subprocess.run(["getfattr", "-n", "user.dervish", "--only-values", str(img1 / "tree" / "xattr-file")],
                           capture_output=True, text=True, check=False)
    assert xattr.stdout == "hello"

    # hist: header with Dirvish's typo, one line
    hist = (vault / "dirvish" / "default.hist").read_text()
    lines = hist.splitlines()
    assert lines[0] == "#IMAGE\tCREATED\tREFERECE\tEXPIRES"
    assert lines[1].split("\t")[0] == "first" and lines[1].split("\t")[2] == "default"

    # index: find -ls lines with the source path as prefix, escaped names
    index = gzip.decompress((img1 / "index.gz").read_bytes()).decode("utf-8", "surrogateescape")
    assert index.splitlines()[0].endswith(str(img1 / "tree"))
    assert (str(tree) + "/odd\\ dir/with\\ space.txt").replace(" tree", "\\ tree") in index
    assert str(img1) + "/tree/" not in index
    # log: rsync -v output without directory lines, then the stats
    log = gzip.decompress((img1 / "log.gz").read_bytes()).decode("utf-8", "replace")
    assert log.startswith("NOTE: no good image of branch default: initialising")
    assert "ACTION: rsync -vrltH --delete" in log
    assert "Number of files:" in log
    assert not any(line.endswith("/") for line in log.splitlines())

    # second image: one file changed -> new inode; everything else hard-linked
    changed = tree / "d05" / "s0" / "f00501.dat"
    changed.write_text("changed\n")
    bank.run("image", "v1", "--image", "second", check=0)
    img2 = vault / "second"
    s2 = summary_of(img2)
    assert s2.reference == "first"
    assert "--link-dest=%s" % (img1 / "tree") in s2.action
    linked = fresh = 0
    for rel, (kind, _payload) in walk(img2 / "tree").items():
        if kind != "file":
            continue
        a = os.lstat(os.path.join(os.fsencode(str(img1 / "tree")), rel))
        b = os.lstat(os.path.join(os.fsencode(str(img2 / "tree")), rel))
        if rel == b"d05/s0/f00501.dat":
            assert a.st_ino != b.st_ino
            fresh += 1
        else:
            assert a.st_ino == b.st_ino, rel
            linked += 1
    assert fresh == 1 and linked > 2000
    assert (img2 / "tree" / "d05" / "s0" / "f00501.dat").read_text() == "changed\n"
    assert len((vault / "dirvish" / "default.hist").read_text().splitlines()) == 3
    assert not (vault / "dirvish" / "lock_file").exists()


def test_existing_image_name_is_refused_and_untouched(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "same", check=0)
    before = {p.name: p.stat().st_mtime_ns for p in (vault / "same").iterdir()}
    proc = bank.run("image", "v1", "--image", "same", check=2)
    assert proc.stderr.strip() == "dervish: image same already exists in vault v1"
    assert {p.name: p.stat().st_mtime_ns for p in (vault / "same").iterdir()} == before
    assert len((vault / "dirvish" / "default.hist").read_text().splitlines()) == 2


def test_image_name_from_image_default_and_time(bank, small_tree):
    vault = bank.vault("v1", small_tree, "image-default: day-%Y-%m-%d_%H%M\n")
    bank.run("image", "v1", "--image-time", "2026-01-02 03:04", check=0)
    assert [p.name for p in image_dirs(vault)] == ["day-2026-01-02_0304"]
    assert summary_of(vault / "day-2026-01-02_0304").image_now == "2026-01-02 03:04:00"


def test_dry_run_creates_nothing(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    proc = bank.run("image", "v1", "--image", "x", "--dry-run", check=0)
    assert "ACTION: rsync -vrltH --delete" in proc.stdout
    assert "Image: x" in proc.stdout
    assert image_dirs(vault) == []
    assert sorted(p.name for p in (vault / "dirvish").iterdir()) == ["default.conf"]


def test_hooks_see_variables_in_every_command(bank, small_tree, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()
    hooks = "".join(
        "%s: echo %s-stdout; echo first=$DIRVISH_IMAGE > %s/%s; env | grep ^DIRVISH_ | sort >> %s/%s; "
        "pwd >> %s/%s; echo year=%%Y pct=%%%% >> %s/%s\n" % ((name, name) + (out, name) * 4)
        for name in ("pre-server", "pre-client", "post-client", "post-server"))
    vault = bank.vault("v1", small_tree, hooks + "exclude:\n\t*.bak\n")
    bank.run("image", "v1", "--image", "h1", check=0)
    image = vault / "h1"
    for name in ("pre-server", "pre-client", "post-client", "post-server"):
        text = (out / name).read_text()
        assert "first=v1:default:h1" in text
        assert "DIRVISH_IMAGE=v1:default:h1" in text
        assert f"DIRVISH_SRC={small_tree}" in text
        assert "DIRVISH_DEST=%s" % (image / "tree") in text
        assert "DIRVISH_CLIENT=localhost" in text
        assert "DIRVISH_SERVER=" in text
        assert "DIRVISH_EXCLUDE=%s" % (image / "exclude") in text
        assert ("DIRVISH_STATUS=success" in text) == name.startswith("post")
        assert "year=2" in text and "pct=%" in text
        cwd = text.splitlines()[-2]
        assert cwd == str(small_tree if name.endswith("client") else image / "tree")
    log = gzip.decompress((image / "log.gz").read_bytes()).decode()
    order = [log.index(f"{n}-stdout") for n in ("pre-server", "pre-client", "post-client", "post-server")]
    assert order == sorted(order) and "Pre-Server: echo pre-server-stdout" in log
    assert log.index("pre-client-stdout") < log.index("ACTION:") < log.index("post-client-stdout")


def test_post_hook_failure_keeps_good_image_but_exits_4(bank, small_tree):
    vault = bank.vault("v1", small_tree, "post-client: exit 3\n")
    proc = bank.run("image", "v1", "--image", "p1", check=4)
    assert "post-client failed (3)" in proc.stderr
    s = summary_of(vault / "p1")
    assert s.status == "success" and s.hook_failures == ["post-client failed (3)"]
    text = (vault / "p1" / "summary").read_text().splitlines()
    assert text[-3:-1] == ["post-client failed (3)", text[-2]] and text[-2].startswith("Backup-complete:")
    assert "p1\t" in (vault / "dirvish" / "default.hist").read_text()


def test_pre_server_failure_means_no_rsync(bank, small_tree):
    vault = bank.vault("v1", small_tree, f"pre-server: exit 5\npost-server: touch {small_tree.parent}/post-ran\n")
    proc = bank.run("image", "v1", "--image", "f1", check=1)
    assert "error -- pre-server failed (5)" in proc.stderr
    image = vault / "f1"
    assert stat.S_IMODE(image.stat().st_mode) == 0o700
    assert list((image / "tree").iterdir()) == []
    s = summary_of(image)
    assert s.status == "error -- pre-server failed (5)" and s.hook_failures == ["pre-server failed (5)"]
    assert not (vault / "dirvish" / "default.hist").exists()
    assert not (small_tree.parent / "post-ran").exists()
    assert sorted(p.name for p in image.iterdir()) == ["log", "summary", "tree"]
    # the failed image is never a reference: the next run initialises again
    proc = bank.run("image", "v1", "--image", "f2", check=1)


def test_reference_skips_images_without_tree_and_other_branch(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    (vault / "dirvish" / "weekly.conf").write_text("expire: +1 year\n")
    for name in ("a", "b", "c"):
        bank.run("image", "v1", "--image", name, check=0)
    subprocess.run(["rm", "-rf", str(vault / "c" / "tree")], check=True)
    bank.run("image", "v1", "--image", "d", check=0)
    assert summary_of(vault / "d").reference == "b"
    # a new branch seeded from the default branch's newest good image
    bank.run("image", "v1:weekly", "--image", "w1", "--reference", "default", check=0)
    s = summary_of(vault / "w1")
    assert s.branch == "weekly" and s.reference == "d" and s.expire.startswith("+1 year")
    assert (vault / "dirvish" / "weekly.hist").read_text().splitlines()[1].startswith("w1\t")
    # an image named directly
    bank.run("image", "v1", "--image", "e", "--reference", "a", check=0)
    assert summary_of(vault / "e").reference == "a"
    f = small_tree / "d00" / "s0" / "f00000.dat"
    assert os.stat(vault / "e" / "tree" / "d00" / "s0" / "f00000.dat").st_ino == os.stat(
        vault / "a" / "tree" / "d00" / "s0" / "f00000.dat").st_ino
    assert f.exists()
    proc = bank.run("image", "v1", "--image", "g", "--reference", "nosuch", check=2)
    assert "no images for reference nosuch" in proc.stderr
    assert not (vault / "g").exists()


def test_a_vault_whose_images_were_all_removed_starts_again_by_itself(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "a", check=0)
    subprocess.run(["rm", "-rf", str(vault / "a")], check=True)  # by hand; the hist still names it
    proc = bank.run("image", "v1", "--image", "b", check=0)
    assert "initialising vault v1 (full copy)" in proc.stderr
    s = summary_of(vault / "b")
    assert s.status == "success" and "--link-dest" not in s.action


def test_init_forces_full_copy(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "a", check=0)
    bank.run("image", "v1", "--image", "b", "--init", check=0)
    s = summary_of(vault / "b")
    assert "--link-dest" not in s.action and s.reference == "default"
    rel = os.path.join("d00", "s0", "f00000.dat")
    assert os.stat(vault / "a" / "tree" / rel).st_ino != os.stat(vault / "b" / "tree" / rel).st_ino


def test_locate_and_status_on_real_images(bank, small_tree):
    vault = bank.vault("v1", small_tree)
    bank.run("image", "v1", "--image", "i1", check=0)
    (small_tree / "d00" / "s1" / "f00001.dat").write_text("new version\n")
    bank.run("image", "v1", "--image", "i2", check=0)
    bank.run("image", "v1", "--image", "i3", check=0)
    proc = bank.run("locate", "v1", "f0000[01].dat$", check=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == "2 matches in 3 images"
    path1 = f"{small_tree}/d00/s1/f00001.dat"
    at = lines.index(path1)
    assert lines[at + 1].endswith(" i3, i2") and lines[at + 2].endswith(" i1")
    path0 = f"{small_tree}/d00/s0/f00000.dat"
    assert lines[lines.index(path0) + 1].endswith(" i3, i2, i1")
    status = bank.run("status", check=0)
    assert status.stdout.splitlines()[0].split() == [
        "VAULT", "LAST", "GOOD", "AGE", "LAST", "ATTEMPT", "STATUS", "IMAGES", "SIZE", "NEW", "DRIVE"]
    row = status.stdout.splitlines()[1].split()
    assert row[0] == "v1" and row[1] == "i3" and row[3] == "i3" and row[4] == "success" and row[5] == "3/3"
    import json

    doc = json.loads(bank.run("status", "--json", "--space", check=0).stdout)
    v = doc["vaults"][0]
    assert v["last_good"] == "i3" and v["images"] == 3 and v["bytes_used"] > 0 and v["running"] is False
    assert v["last_good_bytes"] > 0 and v["last_good_new_bytes"] == 0  # nothing changed between i2 and i3
    assert vault.is_dir()


def test_alias_options_perms_and_long_summary(bank, small_tree):
    alias = "/data/alias"
    vault = bank.vault("v1", small_tree, "rsync-option:\n\t--exclude=s2/\nimage-perm: 0750\nmeta-perm: 0600\n"
                                         "summary: long\nindex: text\nlog: text\nSET sparse\n")
    conf = vault / "dirvish" / "default.conf"
    conf.write_text(conf.read_text().replace(f"tree: {small_tree}\n", f"tree: {small_tree} {alias}\n"))
    bank.run("image", "v1", "--image", "a", check=0)
    image = vault / "a"
    assert stat.S_IMODE(image.stat().st_mode) == 0o750
    for name in ("summary", "log", "index"):
        assert stat.S_IMODE((image / name).stat().st_mode) == 0o600
    s = summary_of(image)
    assert s.tree == f"{small_tree} {alias}" and s.rsync_options == ["--exclude=s2/"]
    assert " -S " in s.action and "--exclude=s2/ --exclude-from=" in s.action
    assert "sparse" in s.set_flags and "Configfiles" in s.extra and s.extra.get("meta-perm") in ("0600", "384")
    assert not any((image / "tree" / d / "s2").exists() for d in ("d00",))
    index_lines = (image / "index").read_text().splitlines()
    assert all(line.split(None, 10)[10].startswith(alias + "/") for line in index_lines[1:])
    assert bank.run("locate", "v1", "f00003", check=0).stdout.splitlines()[1] == f"{alias}/d00/s0/f00003.dat"


def test_image_temp_is_refused_clearly(bank, small_tree):
    vault = bank.vault("v1", small_tree, "image-temp: current\n")
    proc = bank.run("image", "v1", check=2)
    assert proc.stderr.startswith("dervish: vault v1: image-temp: (current) is not supported")
    assert image_dirs(vault) == []
