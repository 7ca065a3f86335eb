"""Expire planning and removal on real bank directories."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dervish_engine.expire import apply_plan, plan_expiry, scan_images
from dervish_engine.summary import Summary, render
from dervish_engine.timespec import format_expire, format_time

NOW = datetime(2026, 12, 1, 12, 0, 0)
DAY = timedelta(days=1)


def make_image(bank: Path, vault: str, when: datetime, branch="default", status="success", expire_days=15,
               complete=True, tree=True, name=None, expire_text=None) -> Path:
    name = name or when.strftime("%Y%m%d%H%M%S")
    path = bank / vault / name
    (bank / vault / "dirvish").mkdir(parents=True, exist_ok=True)
    path.mkdir(parents=True)
    if tree:
        (path / "tree/sub").mkdir(parents=True)
        (path / "tree/sub/file").write_text("data")
    if expire_text is None:
        expire_text = (format_expire(f"+{expire_days} days", when + expire_days * DAY)
                       if expire_days is not None else "Never")
    s = Summary(client="localhost", tree="/srv", rsh="ssh", server="h", bank=str(bank), vault=vault,
                branch=branch, image=name, reference=branch, image_now=format_time(when), expire=expire_text,
                action="rsync ...", backup_begin=format_time(when))
    if complete:
        s.backup_complete = format_time(when + timedelta(minutes=5))
        s.status = status
    (path / "summary").write_text(render(s))
    return path


def names(images):
    return [im.path.name for im in images]


def not_busy(_vault_dir):
    return False


@pytest.fixture
def bank(tmp_path):
    b = tmp_path / "bank"
    b.mkdir()
    return b


def test_plain_expiry(bank):
    old = make_image(bank, "v", NOW - 20 * DAY)
    mid = make_image(bank, "v", NOW - 15 * DAY)  # expires exactly now: <= now counts
    new = make_image(bank, "v", NOW - 1 * DAY)
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert names(plan.remove) == [old.name, mid.name]
    assert plan.kept_newest == []
    assert apply_plan(plan, log=lambda _m: None) == 2
    assert not old.exists() and not mid.exists() and (new / "tree/sub/file").exists()
    assert (bank / "v/dirvish").is_dir()


def test_newest_good_kept_when_all_expired(bank):
    imgs = [make_image(bank, "v", NOW - d * DAY) for d in (40, 30, 20)]
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert names(plan.remove) == [imgs[0].name, imgs[1].name]  # Dirvish kept the oldest one
    assert names(plan.kept_newest) == [imgs[2].name]
    assert "newest good image of v:default" in plan.reasons[str(imgs[2])]


def test_warning_counts_as_good(bank):
    ok = make_image(bank, "v", NOW - 30 * DAY)
    warn = make_image(bank, "v", NOW - 20 * DAY, status="warning (24) -- file vanished on sender")
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert names(plan.remove) == [ok.name] and names(plan.kept_newest) == [warn.name]


def test_branches_and_vaults_are_separate(bank, tmp_path):
    a = make_image(bank, "v", NOW - 30 * DAY)
    b = make_image(bank, "v", NOW - 29 * DAY, branch="weekly")
    bank2 = tmp_path / "bank2"
    c = make_image(bank2, "w", NOW - 28 * DAY)
    plan = plan_expiry(scan_images([bank, bank2]), NOW, is_busy=not_busy)
    assert plan.remove == [] and sorted(names(plan.kept_newest)) == sorted([a.name, b.name, c.name])


def test_never_expires(bank):
    keep = make_image(bank, "v", NOW - 400 * DAY, expire_days=None)
    make_image(bank, "v", NOW - DAY)
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert plan.remove == [] and (bank / "v" / keep.name).exists()


def test_failed_images_are_kept_until_they_expire(bank):
    failed_old = make_image(bank, "v", NOW - 10 * DAY, status="error (23) -- partial transfer")
    killed_old = make_image(bank, "v", NOW - 9 * DAY, complete=False)
    killed_expired = make_image(bank, "v", NOW - 20 * DAY, complete=False)
    good = make_image(bank, "v", NOW - 5 * DAY)
    failed_new = make_image(bank, "v", NOW - 2 * DAY, status="fatal error (12) -- filesystem full", tree=False)
    failed_expired = make_image(bank, "w", NOW - 30 * DAY, status="error (30) -- timeout")
    failed_young = make_image(bank, "w", NOW - 3 * DAY, status="error (30) -- timeout")
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    # a newer good image does not shorten a failed image's life: it stays for inspection until it expires
    assert sorted(names(plan.remove)) == sorted([killed_expired.name, failed_expired.name])
    assert "unfinished image, expired" in plan.reasons[str(killed_expired)]
    assert "failed image, expired" in plan.reasons[str(failed_expired)]
    apply_plan(plan, log=lambda _m: None)
    assert all(p.exists() for p in (good, failed_new, failed_young, failed_old, killed_old))


def test_busy_vault_keeps_every_image(bank):
    running = make_image(bank, "v", NOW - 10 * DAY, complete=False, expire_days=5)
    old = make_image(bank, "v", NOW - 40 * DAY)
    make_image(bank, "v", NOW - 20 * DAY)
    seen = []

    def busy(vault_dir):
        seen.append(vault_dir)
        return True

    plan = plan_expiry(scan_images([bank]), NOW, is_busy=busy)
    assert sorted(names(plan.busy)) == sorted([running.name, old.name]) and plan.remove == []
    assert set(seen) == {bank / "v"}


def test_apply_checks_the_lock_again(bank):
    old = make_image(bank, "v", NOW - 40 * DAY)
    make_image(bank, "v", NOW - 20 * DAY)
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=lambda vault_dir: False)
    assert names(plan.remove) == [old.name]
    assert apply_plan(plan, log=lambda message: None, is_busy=lambda vault_dir: True) == 0
    assert old.exists() and names(plan.busy) == [old.name]


def test_an_interrupted_removal_is_finished_and_never_looks_good(bank):
    old = make_image(bank, "v", NOW - 40 * DAY)
    make_image(bank, "v", NOW - 20 * DAY)
    (old / "summary").rename(old / "summary.expiring")  # what apply_plan does first, then it died
    assert old.name not in names(im for im in scan_images([bank]) if im.good)
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=lambda vault_dir: False)
    assert "interrupted expire" in plan.reasons[str(old)]
    apply_plan(plan, log=lambda message: None, is_busy=lambda vault_dir: False)
    assert not old.exists()


def test_default_busy_check_uses_the_vault_lock(bank):
    make_image(bank, "v", NOW - 20 * DAY)
    killed = make_image(bank, "v", NOW - 10 * DAY, complete=False, name="killed", expire_days=5)
    make_image(bank, "v", NOW - 5 * DAY)
    plan = plan_expiry(scan_images([bank]), NOW)  # no lock file: not busy
    assert "killed" in names(plan.remove)
    assert killed.exists()


def test_dry_run_touches_nothing(bank):
    imgs = [make_image(bank, "v", NOW - d * DAY) for d in (40, 30, 20)]
    before = sorted(str(p) for p in bank.rglob("*"))
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert len(plan.remove) == 2
    assert sorted(str(p) for p in bank.rglob("*")) == before
    assert all(p.exists() for p in imgs)


def test_tree_only(bank):
    old = make_image(bank, "v", NOW - 40 * DAY)
    make_image(bank, "v", NOW - 20 * DAY)
    plan = plan_expiry(scan_images([bank]), NOW, tree_only=True, is_busy=not_busy)
    assert names(plan.remove) == [old.name]
    assert apply_plan(plan, log=lambda _m: None) == 1
    assert (old / "summary").exists() and not (old / "tree").exists()
    # the next run has nothing left to do for that image
    assert plan_expiry(scan_images([bank]), NOW, tree_only=True, is_busy=not_busy).remove == []


def test_foreign_and_broken_images_untouched(bank):
    (bank / "v/lost+found").mkdir(parents=True)
    nosum = bank / "v/notours"
    (nosum / "tree").mkdir(parents=True)
    partial = bank / "v/partial"
    partial.mkdir()
    (partial / "summary").write_text("client: x\nExpire: +1 day == 2000-01-01 00:00:00\n")  # no vault/branch
    bad = make_image(bank, "v", NOW - 40 * DAY, expire_text="+15 dayz == garbage")
    make_image(bank, "v", NOW - 20 * DAY)
    images = scan_images([bank])
    assert {"lost+found", "notours", "partial", bad.name} <= set(names(images))
    plan = plan_expiry(images, NOW, is_busy=not_busy)
    assert plan.remove == []
    bad_info = next(im for im in images if im.path == bad)
    assert bad_info.expire_at is None and "invalid expiration time" in bad_info.expire_error


def test_scan_one_vault_first_bank_and_symlinks(bank, tmp_path):
    make_image(bank, "v", NOW - 40 * DAY, name="a")
    bank2 = tmp_path / "bank2"
    make_image(bank2, "v", NOW - 40 * DAY, name="b")
    make_image(bank2, "w", NOW - 40 * DAY, name="c")
    outside = tmp_path / "outside"
    make_image(outside, "x", NOW - 40 * DAY, name="d")
    os.symlink(outside / "x", bank / "x")  # a symlinked vault
    os.symlink(outside / "x" / "d", bank / "v" / "e")  # a symlinked image
    assert names(scan_images([bank, bank2], "v")) == ["a"]
    assert names(scan_images([bank, bank2], "w")) == ["c"]
    assert sorted(names(scan_images([bank, bank2]))) == ["a", "b", "c"]


def test_removal_never_follows_symlinks(bank, tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep").write_text("x")
    old = make_image(bank, "v", NOW - 40 * DAY, tree=False)
    os.symlink(victim, old / "tree")  # tree is a symlink out of the vault
    (old / "link").symlink_to(victim)
    make_image(bank, "v", NOW - 20 * DAY)
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert names(plan.remove) == [old.name]
    assert apply_plan(plan, log=lambda _m: None) == 1
    assert not old.exists() and (victim / "keep").read_text() == "x"


def test_read_only_dirs_and_failures_are_reported(bank):
    old = make_image(bank, "v", NOW - 40 * DAY)
    make_image(bank, "v", NOW - 20 * DAY)
    (old / "tree/sub").chmod(0o555)  # rsync copies read-only source dirs like this
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    messages = []
    assert apply_plan(plan, log=messages.append) == 1
    assert not old.exists() and messages == [f"removed v:default:{old.name}"]
    # an image that vanished in between is not an error (nothing left to remove)
    assert apply_plan(plan, log=messages.append) == 1
    assert plan.failed == []


def test_expire_by_time_of_image_not_name(bank):
    # names do not sort by time; Backup-complete decides which one is newest
    a = make_image(bank, "v", NOW - 30 * DAY, name="zzz-old")
    b = make_image(bank, "v", NOW - 20 * DAY, name="aaa-new")
    plan = plan_expiry(scan_images([bank]), NOW, is_busy=not_busy)
    assert names(plan.remove) == [a.name] and names(plan.kept_newest) == [b.name]
