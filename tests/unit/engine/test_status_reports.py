"""status for the reports (playbooks/status.yml): client, last attempt's time, drive label, staleness."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from dervish_engine import status

SUMMARY = "client: {client}\nvault: v\nbranch: default\nImage: {n}\nBackup-begin: {b}\n{c}{s}"


def image(vault, name, begin, status_text=None, complete=None, client="10.0.0.2"):
    img = vault / name
    (img / "tree").mkdir(parents=True)
    (img / "summary").write_text(SUMMARY.format(
        client=client, n=name, b=begin, c=f"Backup-complete: {complete}\n" if complete else "",
        s=f"Status: {status_text}\n" if status_text else ""))
    return img


@pytest.fixture
def vault(tmp_path):
    v = tmp_path / "bank" / "v"
    (v / "dirvish").mkdir(parents=True)
    return v


def test_row_names_client_and_when_the_last_attempt_began(vault):
    image(vault, "a", "2026-11-20 10:00:00", "success", "2026-11-20 10:05:00", client="10.0.0.2")
    image(vault, "b", "2026-11-21 10:00:00", "error (23) -- partial transfer", "2026-11-21 10:01:00",
          client="laptop1.example")
    vs = status.vault_status(vault, now=datetime(2026, 11, 21, 12, 0))
    assert (vs.last_good, vs.last_attempt, vs.last_attempt_status) == ("a", "b", "error (23) -- partial transfer")
    assert vs.last_attempt_begin == "2026-11-21 10:00:00"
    assert vs.client == "laptop1.example"
    assert vs.disklabel is None  # tmp_path's filesystem root has no DISKLABEL


def test_mount_root_is_where_the_device_changes(tmp_path):
    assert status.mount_root("/proc/self/fd") == Path("/proc")  # procfs: its own mount
    root = status.mount_root(tmp_path)
    assert root.stat().st_dev == tmp_path.stat().st_dev
    assert root == Path("/") or root.parent.stat().st_dev != root.stat().st_dev


def test_drive_label_is_read_at_the_root_of_the_vaults_filesystem(vault, monkeypatch):
    root = vault.parent.parent
    (root / "DISKLABEL").write_text("offsite-2\nsecond line ignored\n")
    monkeypatch.setattr(status, "mount_root", lambda path: root)
    assert status.drive_label(vault) == "offsite-2"
    assert status.vault_status(vault).disklabel == "offsite-2"


def test_disklabel_that_is_not_a_regular_file_is_no_label(tmp_path):
    os.mkfifo(tmp_path / "DISKLABEL")
    assert status.read_disklabel(tmp_path) is None  # a FIFO: never blocks
    os.remove(tmp_path / "DISKLABEL")
    (tmp_path / "elsewhere").write_text("not mine\n")
    os.symlink(tmp_path / "elsewhere", tmp_path / "DISKLABEL")
    assert status.read_disklabel(tmp_path) is None
    os.remove(tmp_path / "DISKLABEL")
    (tmp_path / "DISKLABEL").write_text("\n")
    assert status.read_disklabel(tmp_path) is None
    (tmp_path / "DISKLABEL").write_text("lab-drive-1\n")
    assert status.read_disklabel(tmp_path) == "lab-drive-1"


def test_stale_means_no_good_image_or_an_old_one(vault, tmp_path):
    image(vault, "a", "2026-11-20 10:00:00", "success", "2026-11-20 10:05:00")
    other = tmp_path / "bank" / "w"
    (other / "dirvish").mkdir(parents=True)
    image(other, "x", "2026-11-22 09:00:00", "error (12) -- protocol error", "2026-11-22 09:00:05")
    now = datetime(2026, 11, 22, 10, 5)
    rows = {r.vault: r for r in status.collect(SimpleNamespace(banks=[tmp_path / "bank"]), now=now)}
    assert rows["v"].age_seconds == 2 * 86400
    assert not status.is_stale(rows["v"], 2 * 86400) and status.is_stale(rows["v"], 2 * 86400 - 1)
    assert rows["w"].last_good is None and status.is_stale(rows["w"], 10 ** 9)


def test_json_carries_the_new_fields(vault):
    image(vault, "a", "2026-11-20 10:00:00", "success", "2026-11-20 10:05:00")
    rows = [status.vault_status(vault, now=datetime(2026, 11, 20, 11, 0))]
    doc = json.loads(status.render_json(rows, now=datetime(2026, 11, 20, 11, 0)))
    assert doc == status.status_doc(rows, now=datetime(2026, 11, 20, 11, 0))
    row = doc["vaults"][0]
    assert {k: row[k] for k in ("client", "last_attempt_begin", "disklabel", "images", "age_seconds")} == {
        "client": "10.0.0.2", "last_attempt_begin": "2026-11-20 10:00:00", "disklabel": None, "images": 1,
        "age_seconds": 3300}
