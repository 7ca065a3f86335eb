"""Expire decisions that differ from Dirvish on purpose (README "What dervish does differently"), and
images expire cannot judge (an unparsable ``Expire:``), which are reported instead of skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_expire_interop import _can_run, run_dirvish_expire

from dervish_engine.expire import plan_expiry, scan_images
from dervish_engine.summary import Summary, render
from dervish_engine.timespec import format_expire, format_time, parse_expire_spec

NOW = datetime(2026, 12, 1, 12, 0, 0)
DAY = timedelta(days=1)
ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def image(bank: Path, vault: str, when: datetime, written: datetime = None, status="success", spec="+15 days",
          expire_text=None, name=None) -> Path:
    """An image whose time (Image-now) is ``when``, written (Backup-begin/complete) at ``written``."""
    written = written or when
    name = name or when.strftime("%Y%m%d-%H%M%S")
    path = bank / vault / name
    (path / "tree").mkdir(parents=True)
    (bank / vault / "dirvish").mkdir(exist_ok=True)
    (path / "tree" / "f").write_text("x")
    s = Summary(client="localhost", tree="/srv/src", rsh="ssh", server="backup1", bank=str(bank), vault=vault,
                branch="default", image=name, reference="default", image_now=format_time(when),
                expire=expire_text or format_expire(spec, parse_expire_spec(spec, when)),
                action=f"rsync -vrltH --delete /srv/src/ {path}/tree", backup_begin=format_time(written),
                backup_complete=format_time(written + timedelta(minutes=3)), status=status)
    (path / "summary").write_text(render(s))
    return path


def plan(bank: Path):
    return plan_expiry(scan_images([bank]), NOW, is_busy=lambda _d: False)


def names(images):
    return sorted(im.path.name for im in images)


def test_newest_good_is_by_image_time_not_by_backup_complete(tmp_path):
    bank = tmp_path / "bank"
    # made yesterday with --image-time 25 days ago: expired at birth, written after every other image
    backfill = image(bank, "v", NOW - 25 * DAY, written=NOW - DAY)
    older = image(bank, "v", NOW - 20 * DAY)
    newest = image(bank, "v", NOW - 16 * DAY)
    p = plan(bank)
    assert names(p.kept_newest) == [newest.name]
    assert names(p.remove) == sorted([backfill.name, older.name])


def test_an_old_image_written_last_is_not_kept_beside_newer_good_ones(tmp_path):
    bank = tmp_path / "bank"
    backfill = image(bank, "v", NOW - 25 * DAY, written=NOW - DAY)
    image(bank, "v", NOW - 2 * DAY)  # newer by image time, not expired
    p = plan(bank)
    assert names(p.remove) == [backfill.name] and p.kept_newest == []


@pytest.mark.skipif(not _can_run(), reason="needs root, unshare and Debian's dirvish package")
def test_dirvish_orders_by_backup_complete(tmp_path):
    """What Dirvish does with the same bank: it sorts by Backup-complete (documented difference)."""
    bank = tmp_path / "bank"
    backfill = image(bank, "v", NOW - 25 * DAY, written=NOW - 16 * DAY + timedelta(hours=1))
    image(bank, "v", NOW - 20 * DAY)
    newest = image(bank, "v", NOW - 16 * DAY)
    listed, cannot, out = run_dirvish_expire(tmp_path, bank)
    assert ("v", "default", backfill.name) in listed and ("v", "default", newest.name) in listed, out
    assert names(plan(bank).kept_newest) == [newest.name]


def test_failed_image_is_kept_for_inspection_until_its_own_expiry(tmp_path):
    bank = tmp_path / "bank"
    failed = image(bank, "v", NOW - 3 * DAY, status="error (23) -- partial transfer")
    image(bank, "v", NOW - DAY)  # a newer good image does not make the failed one go earlier
    assert plan(bank).remove == []
    failed_expired = image(bank, "v", NOW - 16 * DAY, status="error (23) -- partial transfer")
    p = plan(bank)
    assert names(p.remove) == [failed_expired.name] and failed.exists()


def test_compound_spec_adds_every_term(tmp_path):
    base = datetime(2026, 11, 1, 12, 0, 0)
    assert parse_expire_spec("+1 week 2 days", base) == base + 9 * DAY
    assert parse_expire_spec("+1 year 2 months", base) == datetime(2028, 1, 1, 12, 0, 0)


@pytest.mark.skipif(shutil.which("perl") is None or subprocess.run(
    ["perl", "-MTime::ParseDate", "-e", "1"], capture_output=True, check=False).returncode != 0,
    reason="needs Perl's Time::ParseDate (Debian's dirvish depends on it)")
def test_dirvish_reads_only_the_first_term_of_a_compound_spec():
    """Dirvish computes Expire with Time::ParseDate, which stops after '+1 week' (documented difference)."""
    script = 'use Time::ParseDate; print scalar(parsedate($ARGV[0], NOW => 0, GMT => 1)) / 86400, "\\n"'
    days = {spec: float(subprocess.run(["perl", "-e", script, spec], capture_output=True, text=True,
                                       check=True).stdout)
            for spec in ("+1 week 2 days", "+1 year 2 months", "+2 days 12 hours")}
    assert days == {"+1 week 2 days": 7.0, "+1 year 2 months": 365.0, "+2 days 12 hours": 2.5}


def test_unparsable_expire_is_reported_and_the_image_kept(tmp_path):
    bank = tmp_path / "bank"
    bad = image(bank, "v", NOW - 40 * DAY, expire_text="+15 days == someday")
    image(bank, "v", NOW - DAY)
    p = plan(bank)
    assert p.remove == []
    [problem] = p.problems
    assert str(bad / "summary") in problem and "'+15 days == someday'" in problem and "kept" in problem


def cli(master: Path, *args):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    return subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize("dry_run", [True, False])
def test_expire_command_reports_an_unparsable_expire(tmp_path, dry_run):
    bank = tmp_path / "bank"
    bad = image(bank, "v", datetime.now() - 40 * DAY, expire_text="tomorrow-ish")
    old = image(bank, "v", datetime.now() - 30 * DAY)
    image(bank, "v", datetime.now() - DAY)
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    proc = cli(master, "expire", *(["--dry-run"] if dry_run else []))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"dervish: {bad / 'summary'}: Expire: 'tomorrow-ish' cannot be parsed" in proc.stderr
    assert bad.exists()
    assert old.exists() == dry_run  # the other images are still expired
