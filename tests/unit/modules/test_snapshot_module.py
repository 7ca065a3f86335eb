"""The snapshot module's work on the server, with the real engine and real local rsync: per-vault
results (image, status, reference, sizes, duration, error), check mode's plan creating nothing,
a busy vault, a failed vault. (The drive hold and the delegation are proved in the lab:
tests/integration/site/test_backup_playbook.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.modules import snapshot

COLLECTIONS = Path(__file__).resolve().parents[3] / "collections"


@pytest.fixture
def master(tmp_path: Path):
    tree = tmp_path / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "same.txt").write_text("unchanged\n")
    (tree / "sub" / "changed.txt").write_text("one\n")
    bank = tmp_path / "bank"
    for vault, path in (("v1", tree), ("gone", tmp_path / "missing")):
        conf = bank / vault / "dirvish" / "default.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(f"client: localhost\ntree: {path}\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "master.conf").write_text(f"bank:\n\t{bank}\n")
    return load_master(tmp_path / "etc" / "master.conf")


def listing(root: Path) -> list:
    return sorted((str(p), p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_two_images_report_their_reference_figures_and_hard_links(master, tmp_path: Path) -> None:
    first = snapshot.image_vault(master, "v1")
    assert first["status"] == "success" and first["good"] and first["error"] is None, first
    assert first["reference"] is None  # the vault's first image is a full copy
    assert first["image_bytes"] > 0 and isinstance(first["duration"], float)
    time.sleep(1.1)  # image names are per second
    (tmp_path / "src" / "sub" / "changed.txt").write_text("two\n")
    second = snapshot.image_vault(master, "v1")
    assert second["status"] == "success" and second["reference"] == first["image"], second
    vault = tmp_path / "bank" / "v1"
    same = [(vault / image / "tree" / "same.txt").stat().st_ino for image in (first["image"], second["image"])]
    assert same[0] == same[1]
    assert 0 < second["new_bytes"] < second["image_bytes"]


def test_check_mode_plans_the_image_and_its_reference_and_creates_nothing(master, tmp_path: Path) -> None:
    made = snapshot.image_vault(master, "v1")
    before = listing(tmp_path / "bank")
    planned = snapshot.plan_vault(master, "v1")
    assert planned["status"] == "would run" and planned["reference"] == made["image"] and planned["image"]
    assert listing(tmp_path / "bank") == before


def test_check_mode_on_an_unreadable_bank_says_so(master) -> None:
    master.banks[:] = [Path("/nonexistent/bank")]
    planned = snapshot.plan_vault(master, "v1")
    assert planned["status"] == "would run" and planned["reference"] is None
    assert "reference unknown" in planned["messages"][0]


def test_a_vault_another_run_is_imaging_is_busy_not_failed(master, tmp_path: Path) -> None:
    vault = tmp_path / "bank" / "v1"
    holder = subprocess.Popen(  # another process holds the vault's lock, as a running image does
        [sys.executable, "-c", "import sys, time\n"
         "from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import lock\n"
         f"lock.acquire({str(vault)!r}, 'v1', {str(vault / 'x')!r}); print('held', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": str(COLLECTIONS)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = listing(vault)
        busy = snapshot.image_vault(master, "v1")
    finally:
        holder.kill()
        holder.wait()
    assert busy["status"] == "busy" and not busy["good"], busy
    assert f"being backed up by PID {holder.pid}" in busy["error"]
    assert listing(vault) == before


def test_a_failed_vault_carries_its_error_and_names_it_in_the_message(master) -> None:
    failed = snapshot.image_vault(master, "gone")
    assert failed["status"] != "success" and not failed["good"]
    assert "missing" in failed["error"], failed
    assert snapshot.failure_message([failed]).startswith("1 vault(s) failed: gone: ")
