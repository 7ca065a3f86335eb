"""status/expire on a missing bank (an unmounted drive), and space that is recorded, not walked.

The images are made by the real engine (local rsync); the unmounted drive is a real tmpfs that is
mounted, given a bank, and unmounted again, so only the bare mount point is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dervish_engine import space, status
from dervish_engine.summary import parse_summary

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def cli(master: Path, *args):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    return subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def unmounted_drive(tmp_path):
    """A mount point whose drive (a tmpfs holding the bank) has been unmounted again."""
    mnt = tmp_path / "backup"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")
    try:
        (mnt / "dervish" / "v" / "dirvish").mkdir(parents=True)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert not (mnt / "dervish").exists()
    return mnt / "dervish"


@pytest.fixture
def site(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 10000)
    (src / "b").write_bytes(b"b" * 20000)
    bank = tmp_path / "bank"
    (bank / "v" / "dirvish").mkdir(parents=True)
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\n")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    return master, bank, src


@pytest.mark.parametrize("command", [("status",), ("status", "--json"), ("expire",), ("expire", "--dry-run")])
def test_a_missing_bank_is_an_error(tmp_path, unmounted_drive, command):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{unmounted_drive}\n")
    proc = cli(master, *command)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"dervish: bank {unmounted_drive} does not exist or is not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_other_banks_are_still_shown(site, unmounted_drive):
    master, bank, dummy = site
    master.write_text(f"bank:\n\t{unmounted_drive}\n\t{bank}\n")
    proc = cli(master, "status", "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert [v["vault"] for v in doc["vaults"]] == ["v"] and doc["missing_banks"] == [str(unmounted_drive)]


def test_an_image_records_its_size_and_status_shows_it_without_walking(site, monkeypatch):
    master, bank, src = site
    assert cli(master, "image", "v", "--image", "one").returncode == 0
    (src / "c").write_bytes(b"c" * 5000)
    assert cli(master, "image", "v", "--image", "two").returncode == 0
    one = parse_summary((bank / "v" / "one" / "summary").read_text())
    two = parse_summary((bank / "v" / "two" / "summary").read_text())
    assert (one.image_bytes, one.image_new_bytes) == (30000, 30000)
    assert (two.image_bytes, two.image_new_bytes) == (35000, 5000)  # a and b are hard links to "one"
    text = (bank / "v" / "two" / "summary").read_text().splitlines()
    assert text[-4:-2] == ["Image-bytes: 35000", "Image-new-bytes: 5000"]  # before Backup-complete, Status
    assert text[-2].startswith("Backup-complete: ") and text[-1] == "Status: success"

    walked = []
    real_scandir = os.scandir

    def spy(path="."):
        walked.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    [row] = status.collect(SimpleNamespace(banks=[bank]))
    assert (row.last_good, row.last_good_bytes, row.last_good_new_bytes, row.bytes_used) == ("two", 35000, 5000, None)
    assert not [p for p in walked if "/tree" in p]  # no image tree was listed
    [row] = status.collect(SimpleNamespace(banks=[bank]), with_usage=True)
    assert row.bytes_used >= 35000 and [p for p in walked if "/tree" in p]


def test_status_table_default_and_with_space(site):
    master, bank, dummy = site
    assert cli(master, "image", "v", "--image", "one").returncode == 0
    proc = cli(master, "status")
    assert proc.returncode == 0, proc.stderr
    head, row = proc.stdout.splitlines()
    assert head.split()[-3:] == ["SIZE", "NEW", "DRIVE"] and row.split()[-3:] == ["29.3K", "29.3K", "-"]
    proc = cli(master, "status", "--space")
    head, row = proc.stdout.splitlines()
    assert head.split()[-4:] == ["SIZE", "NEW", "DRIVE", "USED"] and row.split()[-1].endswith("K")
    doc = json.loads(cli(master, "status", "--json").stdout)
    assert doc["vaults"][0]["last_good_bytes"] == 30000 and doc["vaults"][0]["bytes_used"] is None


def test_figures_from_the_last_attempt_of_a_log(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"ACTION: rsync\nTotal file size: 1,000 bytes\nTotal transferred file size: 10 bytes\n"
                    b"ACTION: rsync\nTotal file size: 2,345,678 bytes\nTotal transferred file size: 1,234 bytes\n"
                    b"RESULTS: warnings = 1, errors = 0\n")
    assert space.from_rsync_log(log) == (2345678, 1234)
    log.write_bytes(b"sent 1 bytes  received 2 bytes\ntotal size is 4,321  speedup is 1.00\n")  # UNSET stats
    assert space.from_rsync_log(log) == (4321, None)
    assert space.from_rsync_log(tmp_path / "missing") == (None, None)
