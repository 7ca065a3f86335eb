"""``dervish status`` names the drive (its DISKLABEL) holding each vault, so with rotated drives the
operator sees which drive holds which images (issue 9, prepare_drive)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from dervish_engine import status


def _vault(bank, name):
    vault = bank / name
    (vault / "dirvish").mkdir(parents=True)
    img = vault / "2026-11-20_04:00"
    (img / "tree").mkdir(parents=True)
    (img / "summary").write_text("client: c\nImage-now: 2026-11-20 04:00:00\nBackup-begin: 2026-11-20 04:00:00\n"
                                 "Backup-complete: 2026-11-20 04:05:00\nStatus: success\n")


def test_table_has_the_drive_of_each_vault(tmp_path, monkeypatch):
    # the vault's filesystem root cannot be a temporary directory here: its DISKLABEL is read through drive_label
    monkeypatch.setattr(status, "drive_label", lambda path: "backup-2" if path.name == "on-drive" else None)
    _vault(tmp_path / "bank", "on-drive")
    _vault(tmp_path / "bank", "no-label")
    rows = status.collect(SimpleNamespace(banks=[tmp_path / "bank"]), now=datetime(2026, 11, 21, 4, 0))
    table = status.render_table(rows).splitlines()
    assert table[0].split()[-1] == "DRIVE"
    cells = {line.split()[0]: line.split()[-1] for line in table[1:]}
    assert cells == {"on-drive": "backup-2", "no-label": "-"}
    assert status.render_table(rows, with_usage=True).splitlines()[0].split()[-2:] == ["DRIVE", "USED"]
