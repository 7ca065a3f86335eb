"""status: per-vault figures, hard links counted once, table and JSON."""

from __future__ import annotations

import json
import os
from datetime import datetime
from types import SimpleNamespace

from dervish_engine import status

SUMMARY = "vault: v\nbranch: default\nImage: {n}\nBackup-begin: {b}\n{c}{s}"


def image(vault, name, begin, status_text=None, complete=None, tree=True):
    img = vault / name
    img.mkdir(parents=True)
    if tree:
        (img / "tree").mkdir()
    (img / "summary").write_text(SUMMARY.format(n=name, b=begin, c=f"Backup-complete: {complete}\n" if complete
                                                else "", s=f"Status: {status_text}\n" if status_text else ""))
    return img


def test_vault_status(tmp_path):
    v = tmp_path / "bank" / "v"
    (v / "dirvish").mkdir(parents=True)
    a = image(v, "a", "2026-11-20 10:00:00", "success", "2026-11-20 10:05:00")
    b = image(v, "b", "2026-11-21 10:00:00", "warning (24) -- file vanished on sender", "2026-11-21 10:05:00")
    image(v, "c", "2026-11-22 10:00:00", "error (23) -- partial transfer", "2026-11-22 10:05:00")
    image(v, "d", "2026-11-23 10:00:00")  # killed: no Status
    (v / "junk").mkdir()  # no summary: not an image
    (a / "tree" / "big").write_bytes(b"x" * 100_000)
    os.link(a / "tree" / "big", b / "tree" / "big")
    vs = status.vault_status(v, now=datetime(2026, 11, 21, 12, 5, 0), with_usage=True)
    assert (vs.images, vs.good_images, vs.last_good, vs.last_attempt) == (4, 2, "b", "d")
    assert vs.last_attempt_status == "interrupted (no Status)"
    assert vs.age_seconds == 2 * 3600 and not vs.running
    single = os.stat(a / "tree" / "big").st_blocks * 512
    assert single <= vs.bytes_used < 2 * single


def test_disk_usage_counts_hard_links_once(tmp_path):
    (tmp_path / "f").write_bytes(b"y" * 50_000)
    for i in range(5):
        os.link(tmp_path / "f", tmp_path / f"l{i}")
    one = os.stat(tmp_path / "f").st_blocks * 512
    assert status.disk_usage(tmp_path) == one + os.lstat(tmp_path).st_blocks * 512


def test_render_table_and_json(tmp_path):
    bank = tmp_path / "bank"
    v = bank / "v"
    (v / "dirvish").mkdir(parents=True)
    image(v, "a", "2026-11-20 10:00:00", "success", "2026-11-20 10:05:00")
    (bank / "not-a-vault").mkdir()
    rows = status.collect(SimpleNamespace(banks=[bank]), now=datetime(2026, 11, 22, 10, 5))
    assert [r.vault for r in rows] == ["v"]
    table = status.render_table(rows).splitlines()
    assert table[0].split() == ["VAULT", "LAST", "GOOD", "AGE", "LAST", "ATTEMPT", "STATUS", "IMAGES", "SIZE", "NEW",
                                "DRIVE"]
    assert table[1].split()[:6] == ["v", "a", "2d00h", "a", "success", "1/1"]
    doc = json.loads(status.render_json(rows))
    assert doc["vaults"][0]["last_good_complete"] == "2026-11-20 10:05:00"
    assert status.human_bytes(1536) == "1.5K" and status.human_age(59) == "0m"
