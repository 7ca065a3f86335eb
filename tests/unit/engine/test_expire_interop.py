"""Interoperability: Debian's real ``dirvish-expire --no-run`` reads banks written in our summary format.

``dirvish-expire`` insists on ``/etc/dirvish/master.conf``; the test runs it in a private mount
namespace (``unshare --mount``) with a temporary directory bind-mounted over ``/etc/dirvish``, so the
machine's ``/etc`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dervish_engine.expire import plan_expiry, scan_images
from dervish_engine.summary import Summary, render
from dervish_engine.timespec import format_expire, format_time, parse_expire_spec

NOW = datetime(2026, 12, 1, 12, 0, 0)
DAY = timedelta(days=1)
DIRVISH_EXPIRE = "/usr/sbin/dirvish-expire"


def _can_run() -> bool:
    if not os.path.exists(DIRVISH_EXPIRE) or shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    if os.path.exists("/etc/dirvish.conf"):  # would be read instead of our master.conf
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _can_run(), reason="needs root, unshare and Debian's dirvish package")


def image(bank: Path, vault: str, when: datetime, branch="default", status="success", spec="+15 days",
          complete=True, tree=True) -> str:
    name = when.strftime("%Y%m%d-%H%M%S")
    path = bank / vault / name
    path.mkdir(parents=True)
    (bank / vault / "dirvish").mkdir(exist_ok=True)
    if tree:
        (path / "tree").mkdir()
        (path / "tree/f").write_text("x")
    s = Summary(client="localhost", tree="/srv/src", rsh="ssh", server="backup1", bank=str(bank), vault=vault,
                branch=branch, image=name, reference=branch, image_now=format_time(when),
                expire=format_expire(spec, parse_expire_spec(spec, when)), excludes=["*.tmp"],
                set_flags=["permissions", "devices", "numeric-ids", "stats", "acls", "xattrs"],
                unset_flags=["checksum", "init", "sparse", "whole-file", "xdev", "zxfer"],
                action=f"rsync -vrltH --delete /srv/src/ {path}/tree", backup_begin=format_time(when))
    if complete:
        s.backup_complete = format_time(when + timedelta(minutes=3))
        s.status = status
    (path / "summary").write_text(render(s))
    return name


def run_dirvish_expire(tmp_path: Path, bank: Path) -> tuple:
    etc = tmp_path / "etc-dirvish"
    etc.mkdir()
    (etc / "master.conf").write_text(f"bank:\n\t{bank}\n")
    script = (f'mount --bind "{etc}" /etc/dirvish && '
              f'exec {DIRVISH_EXPIRE} --no-run --time "{format_time(NOW)}"')
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    listed, cannot = set(), set()
    for line in proc.stdout.splitlines():
        words = line.split()
        if line.startswith("cannot expire "):
            cannot.add(tuple(words[2].split(":")))
        elif len(words) >= 2 and ":" in words[0] and words[0] != "VAULT:BRANCH":
            vault, branch = words[0].split(":", 1)
            listed.add((vault, branch, words[1]))
    return listed, cannot, proc.stdout


def ours(bank: Path) -> set:
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=lambda _d: False)
    return {(im.vault, im.branch, im.name) for im in plan.remove}


def test_dirvish_expire_agrees_where_semantics_agree(tmp_path):
    bank = tmp_path / "bank"
    expected = set()
    for days in (40, 30, 20):
        expected.add(("v1", "default", image(bank, "v1", NOW - days * DAY)))
    image(bank, "v1", NOW - 5 * DAY)  # unexpired good image
    image(bank, "v1", NOW - 400 * DAY, spec="never")  # never expires
    expected.add(("v1", "weekly", image(bank, "v1", NOW - 60 * DAY, branch="weekly", spec="+1 month")))
    image(bank, "v1", NOW - 7 * DAY, branch="weekly", spec="+1 month")
    expected.add(("v1", "weekly", image(bank, "v1", NOW - 50 * DAY, branch="weekly", spec="+1 month",
                                        status="error (23) -- partial transfer")))
    image(bank, "v2", NOW - DAY, spec="2026-12-31 00:00:00")  # absolute spec, unexpired
    image(bank, "v2", NOW - 3 * DAY, spec="+3 days")  # exactly now: expired for both
    expected.add(("v2", "default", (NOW - 3 * DAY).strftime("%Y%m%d-%H%M%S")))
    listed, cannot, out = run_dirvish_expire(tmp_path, bank)
    assert listed == expected, out
    assert cannot == set(), out
    assert ours(bank) == expected


def test_documented_differences_are_the_fixed_bugs(tmp_path):
    bank = tmp_path / "bank"
    old = [image(bank, "v1", NOW - d * DAY) for d in (40, 30)]
    newest = image(bank, "v1", NOW - 20 * DAY)
    warn_old = image(bank, "v2", NOW - 40 * DAY)
    image(bank, "v2", NOW - 5 * DAY, status="warning (24) -- file vanished on sender")
    listed, cannot, out = run_dirvish_expire(tmp_path, bank)
    # Dirvish keeps the OLDEST expired image ("cannot expire") and deletes the newer ones ...
    assert cannot == {("v1", "default", old[0]), ("v2", "default", warn_old)}, out
    assert listed == {("v1", "default", old[1]), ("v1", "default", newest)}, out
    # ... dervish keeps the newest good one, and a warning image counts as good.
    assert ours(bank) == {("v1", "default", old[0]), ("v1", "default", old[1]), ("v2", "default", warn_old)}
