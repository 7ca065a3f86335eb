"""dervish.backup.locate_prunepaths checked with plocate's real updatedb, in tmp_path only.

plocate's updatedb has no option to choose its configuration file (see ``updatedb --help``): it always
reads /etc/updatedb.conf. So each run happens in a private mount namespace (``unshare --mount``) where the
tmp copy is bind-mounted over /etc/updatedb.conf; the machine's file is never written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import locate_prunepaths as mod

UPDATEDB = shutil.which("updatedb") or "/usr/sbin/updatedb"
PLOCATE = shutil.which("plocate")
UNSHARE = shutil.which("unshare")
ETC_CONF = Path("/etc/updatedb.conf")


def _plocate_updatedb() -> bool:
    try:
        out = subprocess.run([UPDATEDB, "--help"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return False
    return "plocate" in out.stdout + out.stderr


pytestmark = [
    pytest.mark.skipif(PLOCATE is None or not _plocate_updatedb(), reason="needs plocate's updatedb"),
    pytest.mark.skipif(UNSHARE is None or os.geteuid() != 0, reason="needs root and unshare for a bind mount"),
    pytest.mark.skipif(not ETC_CONF.is_file(), reason="needs /etc/updatedb.conf as a bind-mount target"),
]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "backup" / "vault" / "2026-11-26" / "tree" / "etc").mkdir(parents=True)
    (root / "backup" / "vault" / "2026-11-26" / "tree" / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "srv" / "data").mkdir(parents=True)
    (root / "srv" / "data" / "control.txt").write_text("indexed\n")
    conf = tmp_path / "updatedb.conf"
    shutil.copyfile(ETC_CONF, conf)
    conf.chmod(0o644)
    return root, conf


def run_module(capsys, **args):
    args.update(_ansible_check_mode=False, _ansible_diff=True)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def index(conf: Path, root: Path, db: Path, command: str = "") -> list:
    """Run updatedb (or ``command``) in a private mount namespace with ``conf`` bind-mounted over
    /etc/updatedb.conf; return the paths under ``root`` that the database ``db`` lists."""
    command = command or f'{UPDATEDB} -U "{root}" -o "{db}"'
    script = f'mount --bind "{conf}" /etc/updatedb.conf && {command}'
    proc = subprocess.run([UNSHARE, "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "updatedb.conf" not in proc.stderr, proc.stderr  # no parse complaints
    listing = subprocess.run([PLOCATE, "-d", str(db), str(root)], capture_output=True, text=True, timeout=30,
                             check=False)
    return listing.stdout.splitlines()


def test_pruned_backup_tree_is_not_indexed(tree, capsys, tmp_path):
    root, conf = tree
    snapshot_file = str(root / "backup" / "vault" / "2026-11-26" / "tree" / "etc" / "hosts")
    control = str(root / "srv" / "data" / "control.txt")

    before = index(conf, root, tmp_path / "before.db")
    assert snapshot_file in before and control in before

    # trailing slash on purpose: the module writes the form updatedb matches
    result = run_module(capsys, paths=[f"{root}/backup/"], path=str(conf), slocate_cron=[])
    assert result["changed"] is True and result["prunepaths"][-1] == f"{root}/backup"
    assert conf.read_text().replace(f" {root}/backup", "") == ETC_CONF.read_text()

    after = index(conf, root, tmp_path / "after.db")
    assert control in after
    assert snapshot_file not in after
    assert not [p for p in after if p.startswith(f"{root}/backup/")]

    # state=absent puts the backup tree back into the index
    run_module(capsys, paths=[f"{root}/backup"], path=str(conf), state="absent", slocate_cron=[])
    assert conf.read_text() == ETC_CONF.read_text()
    assert snapshot_file in index(conf, root, tmp_path / "again.db")


def test_trailing_slash_written_literally_would_not_prune(tree, tmp_path):
    """Why the module normalises: updatedb compares PRUNEPATHS entries literally."""
    root, conf = tree
    conf.write_text(f'PRUNEPATHS="{root}/backup/"\n')
    listing = index(conf, root, tmp_path / "slash.db")
    assert str(root / "backup" / "vault" / "2026-11-26" / "tree" / "etc" / "hosts") in listing


def test_created_file_is_accepted_by_updatedb(tree, capsys, tmp_path):
    root, _conf = tree
    conf = tmp_path / "new" / "updatedb.conf"
    conf.parent.mkdir()
    result = run_module(capsys, paths=[f"{root}/backup"], path=str(conf), slocate_cron=[])
    assert result["changed"] is True
    listing = index(conf, root, tmp_path / "created.db")
    assert str(root / "srv" / "data" / "control.txt") in listing
    assert not [p for p in listing if p.startswith(f"{root}/backup/")]


def test_cron_script_exclude_list_is_used_by_updatedb(tree, capsys, tmp_path):
    """A cron script's space-separated -e list (plocate's --add-prunepaths) edited by the module, then run."""
    root, conf = tree
    db = tmp_path / "cron.db"
    cron = tmp_path / "locate.cron"
    cron.write_text(f'#!/bin/sh\n{UPDATEDB} -U "{root}" -o "{db}" -e "/nonexistent/a /nonexistent/b"\n')
    cron.chmod(0o755)
    result = run_module(capsys, paths=[f"{root}/backup"], path=str(conf), slocate_cron=[str(cron)])
    assert str(cron) in result["files_changed"]
    assert f'-e "/nonexistent/a /nonexistent/b {root}/backup"' in cron.read_text()
    shutil.copyfile(ETC_CONF, conf)  # only the cron script's -e list prunes in this run
    listing = index(conf, root, db, command=str(cron))
    assert str(root / "srv" / "data" / "control.txt") in listing
    assert not [p for p in listing if p.startswith(f"{root}/backup/")]
