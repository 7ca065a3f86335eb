"""A truly full bank (item E) and a read-only one (item H), on real filesystems.

The bank is a small ext4 filesystem on a loop device (mounted with ``-o loop``: the kernel detaches
it again on umount). A source of many files fills it completely, so that even rsync's error output
and the image's own summary could not be written into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from dervish_engine.summary import parse_summary


@pytest.fixture
def small_fs(tmp_path):
    img = tmp_path / "bank.img"
    with open(img, "wb") as fh:
        fh.truncate(24 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-N", "16384", str(img)], check=True)
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def checksums(root: Path):
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


def summary_of(image):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape"))


def no_traceback(proc):
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout + proc.stderr


def fill(src: Path, count: int, size: int = 256 << 10):
    for i in range(count):
        path = src / f"d{i // 100:03d}" / f"f{i:05d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def test_a_truly_full_bank_stops_the_run_cleanly(bank, small_fs, tmp_path):
    bank = type(bank)(small_fs)  # the conftest's Bank, on the small filesystem
    srcs = {}
    for name in ("a", "b", "c"):
        srcs[name] = tmp_path / f"src-{name}"
        fill(srcs[name], 2, 64 << 10)
        bank.vault(name, srcs[name])
    bank.runall = ["a", "b", "c"]
    bank.master_extra = "image-default: first\n"
    bank.write_master()
    bank.run("runall", check=0)
    before = {name: checksums(bank.bank / name / "first") for name in srcs}
    hists = {name: (bank.bank / name / "dirvish" / "default.hist").read_bytes() for name in srcs}
    # 32 MiB into what is left of 24 MiB, in one-block files: when a write fails, rsync's removal of
    # its temp file frees nothing, so the bank stays full to the last block
    fill(srcs["a"], 8000, 4096)
    bank.master_extra = "image-default: second\n"
    bank.write_master()
    proc = bank.run("runall", timeout=300)
    no_traceback(proc)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    second = bank.bank / "a" / "second"
    status = summary_of(second).status
    assert status.startswith("fatal error (") and "filesystem full" in status
    assert not (second / "tree").exists(), "the failing image's partial tree is removed"
    err = (second / "rsync_error").read_text()
    assert "No space left on device" in err and err.count("*** Execution cycle") == 1, "not retried"
    assert "a done (fatal error" in proc.stdout and "filesystem full" in proc.stdout
    for name in ("b", "c"):
        line = next(line for line in proc.stdout.splitlines() if f" {name} " in line and "done" in line)
        assert "not started" in line and "full" in line and str(bank.bank) in line, line
        assert sorted(p.name for p in (bank.bank / name).iterdir()) == ["dirvish", "first"]
    for name in srcs:
        assert checksums(bank.bank / name / "first") == before[name], f"earlier image of {name} changed"
        assert (bank.bank / name / "dirvish" / "default.hist").read_bytes() == hists[name]
        assert not (bank.bank / name / "dirvish" / "lock_file").exists()


def test_image_into_a_bank_that_is_already_full_is_refused_with_exit_2(bank, small_fs, tmp_path):
    bank = type(bank)(small_fs)  # the conftest's Bank, on the small filesystem
    src = tmp_path / "src"
    fill(src, 1, 4096)
    vault = bank.vault("v1", src)
    bank.run("image", "v1", "--image", "first", check=0)
    before = checksums(vault / "first")
    with contextlib.suppress(OSError), open(small_fs / "filler", "wb") as fh:
        while True:
            fh.write(b"\0" * (1 << 20))
            fh.flush()
    with contextlib.suppress(OSError):  # take the last inodes and blocks too
        for i in range(4096):
            (small_fs / f"f{i}").mkdir()
    proc = bank.run("image", "v1", "--image", "second")
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "full" in proc.stderr and "nothing was backed up" in proc.stderr
    assert not (vault / "second").exists()
    assert checksums(vault / "first") == before
    assert not (vault / "dirvish" / "lock_file").exists()


def test_read_only_bank_is_exit_2_with_a_clear_message(bank, small_fs, tmp_path):
    bank = type(bank)(small_fs)  # the conftest's Bank, on the small filesystem
    src = tmp_path / "src"
    fill(src, 1, 4096)
    vault = bank.vault("v1", src)
    bank.runall = ["v1"]
    bank.write_master()
    bank.run("image", "v1", "--image", "first", check=0)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        proc = bank.run("image", "v1", "--image", "second")
        no_traceback(proc)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "read-only" in proc.stderr and str(bank.bank) in proc.stderr
        assert "[Errno" not in proc.stderr
        proc = bank.run("runall")
        no_traceback(proc)
        assert proc.returncode == 1 and "v1 done (not started: " in proc.stdout and "read-only" in proc.stdout
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert sorted(p.name for p in vault.iterdir()) == ["dirvish", "first"]
