"""Interoperability with Debian's real Dirvish 1.2.1 on one bank.

Debian's dirvish reads the fixed /etc/dirvish/master.conf, so every Dirvish command runs under
``unshare --mount`` with a tmp dir bind-mounted over /etc/dirvish (private mount namespace: the
machine's /etc/dirvish is never changed). The mountpoint is created only if it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dervish_engine.summary import parse_summary

pytestmark = pytest.mark.skipif(
    shutil.which("dirvish") is None and not Path("/usr/sbin/dirvish").exists() or shutil.which("unshare") is None
    or os.geteuid() != 0, reason="needs Debian's dirvish, unshare and root")

ETC_DIRVISH = Path("/etc/dirvish")


@pytest.fixture
def shared(bank):
    """A bank whose master.conf both dervish (--config) and Dirvish (bind-mounted) read."""
    bank.master_extra = "image-default: %Y%m%d-%H%M%S\nindex: gzip\nexpire-default: +15 days\n"
    bank.write_master()
    if not ETC_DIRVISH.exists():
        ETC_DIRVISH.mkdir()  # mountpoint only; Debian's dirvish package normally ships it
    return bank


def dirvish(bank, *argv, check=0):
    script = 'mount --bind "$0" /etc/dirvish && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(bank.confdir),
                           *argv], capture_output=True, text=True, timeout=60, check=False)
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def images(vault):
    return sorted(p.name for p in vault.iterdir() if p.name != "dirvish")


def test_dervish_continues_a_bank_started_by_dirvish(shared, small_tree):
    vault = shared.vault("v", small_tree)
    dirvish(shared, "/usr/sbin/dirvish", "--vault", "v", "--init")
    [first] = images(vault)
    shared.run("image", "v", "--image", "dv1", check=0)
    s = parse_summary((vault / "dv1" / "summary").read_text())
    assert s.reference == first and f"--link-dest={vault / first / 'tree'}" in s.action
    rel = Path("d00") / "s0" / "f00000.dat"
    assert (vault / "dv1" / "tree" / rel).stat().st_ino == (vault / first / "tree" / rel).stat().st_ino
    hist = (vault / "dirvish" / "default.hist").read_text().splitlines()
    assert hist[0] == "#IMAGE\tCREATED\tREFERECE\tEXPIRES"
    assert [line.split("\t")[0] for line in hist[1:]] == [first, "dv1"]
    # and real Dirvish continues after dervish: it links to dervish's image
    time.sleep(1.1)  # Dirvish names images by the second
    dirvish(shared, "/usr/sbin/dirvish", "--vault", "v")
    newest = [name for name in images(vault) if name not in (first, "dv1")][0]
    assert parse_summary((vault / newest / "summary").read_text()).reference == "dv1"
    assert (vault / newest / "tree" / rel).stat().st_ino == (vault / "dv1" / "tree" / rel).stat().st_ino


def test_dirvish_locate_reads_a_dervish_bank(shared, small_tree):
    shared.vault("v", small_tree)
    shared.run("image", "v", "--image", "a", check=0)
    (small_tree / "d00" / "s1" / "f00001.dat").write_text("changed\n")
    time.sleep(1.1)  # distinct Backup-complete seconds: dirvish-locate's order of ties is arbitrary
    shared.run("image", "v", "--image", "b", check=0)
    ours = shared.run("locate", "v", "f0000[01].dat$", check=0).stdout
    theirs = dirvish(shared, "dirvish-locate", "v", "f0000[01].dat$").stdout
    assert theirs.splitlines()[0] == "2 matches in 2 images"
    assert ours == theirs


def test_dirvish_expire_reads_a_dervish_bank(shared, small_tree):
    vault = shared.vault("v", small_tree)
    shared.run("image", "v", "--image", "old", "--image-time", "2020-01-01 00:00", "--expire", "+1 day", check=0)
    shared.run("image", "v", "--image", "new", check=0)
    out = dirvish(shared, "dirvish-expire", "--no-run").stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert ["VAULT:BRANCH", "IMAGE", "CREATED", "EXPIRED"] in lines
    rows = [line for line in lines if line[0] == "v:default"]
    assert [row[1] for row in rows] == ["old"]
    assert rows[0][-4:] == ["+1", "day", "==", "2020-01-02"] or "2020-01-02" in rows[0]
    assert images(vault) == ["new", "old"]  # --no-run removed nothing
