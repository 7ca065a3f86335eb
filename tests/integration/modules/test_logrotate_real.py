"""dervish.backup.logrotate_dateext against a copy of this machine's logrotate set-up, checked by real logrotate.

Everything happens in tmp_path: /etc/logrotate.conf and /etc/logrotate.d are copied, the include is pointed
at the copy, and forced rotations use their own state file and only a log inside tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.module_utils.logrotate_conf import MARKER
from ansible_collections.dervish.backup.plugins.modules import logrotate_dateext as mod

LOGROTATE = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
ETC_CONF = Path("/etc/logrotate.conf")
ETC_DIR = Path("/etc/logrotate.d")

pytestmark = [
    pytest.mark.skipif(LOGROTATE is None, reason="needs logrotate"),
    pytest.mark.skipif(not ETC_CONF.is_file() or not ETC_DIR.is_dir(), reason="needs /etc/logrotate.conf and .d"),
    pytest.mark.skipif(os.geteuid() != 0, reason="logrotate's checks of config ownership assume root"),
]


@pytest.fixture
def copy(tmp_path):
    """A copy of the machine's logrotate config whose include points at a copied logrotate.d."""
    confd = tmp_path / "logrotate.d"
    shutil.copytree(ETC_DIR, confd)
    logs = tmp_path / "logs"
    logs.mkdir()
    app_log = logs / "app.log"
    app_log.write_text("line 1\nline 2\n")
    (confd / "dervish-test").write_text(f"{app_log} {{\n    rotate 4\n    missingok\n}}\n")
    (confd / "dervish-test").chmod(0o644)
    text = ETC_CONF.read_text()
    new_text, count = re.subn(r"(?m)^(\s*include\s+)/etc/logrotate\.d\s*$", rf"\g<1>{confd}", text)
    assert count == 1, "expected exactly one 'include /etc/logrotate.d' in /etc/logrotate.conf"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(new_text)
    conf.chmod(0o644)
    moduletmp = tmp_path / "moduletmp"
    moduletmp.mkdir()
    return conf, confd, app_log, moduletmp


def run_module(capsys, moduletmp, **args):
    args.update(_ansible_check_mode=False, _ansible_diff=True, _ansible_tmpdir=str(moduletmp))
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def logrotate(*argv, cwd=None):
    return subprocess.run([LOGROTATE, *argv], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def keep_only_test_entry(confd: Path) -> None:
    """Before a forced rotation: drop the copies of the machine's entries so no real log is touched."""
    for entry in confd.iterdir():
        if entry.name != "dervish-test":
            entry.unlink()


def test_module_output_passes_logrotate_and_rotates_with_date(copy, capsys, tmp_path):
    conf, confd, app_log, moduletmp = copy
    had_dateext = any(line.strip() == "dateext" for line in conf.read_text().splitlines())

    result = run_module(capsys, moduletmp, path=str(conf), dateformat="-%Y%m%d")
    assert "failed" not in result, result
    text = conf.read_text()
    assert "dateformat -%Y%m%d" in text
    if not had_dateext:
        assert result["changed"] is True and MARKER + "\ndateext\n" in text
    assert result["nodateext_overrides"] == [
        o for o in result["nodateext_overrides"] if o["file"].startswith(str(confd))
    ]

    # Idempotent against the real file set.
    assert run_module(capsys, moduletmp, path=str(conf), dateformat="-%Y%m%d")["changed"] is False

    # Real logrotate accepts the whole configuration (with the copied logrotate.d) ...
    state = tmp_path / "state"
    debug = logrotate("-d", "-s", str(state), str(conf))
    assert debug.returncode == 0, debug.stderr
    assert not [ln for ln in (debug.stdout + debug.stderr).splitlines() if str(conf) + ":" in ln]
    assert "reading config file dervish-test" in debug.stderr + debug.stdout

    # ... and a forced rotation of the tmp log gives <log>-YYYYMMDD.
    keep_only_test_entry(confd)
    day_before = time.strftime("%Y%m%d")
    forced = logrotate("-f", "-s", str(state), str(conf))
    day_after = time.strftime("%Y%m%d")
    assert forced.returncode == 0, forced.stderr
    rotated = sorted(p.name for p in app_log.parent.iterdir())
    assert rotated in (["app.log", f"app.log-{day_before}"], ["app.log", f"app.log-{day_after}"]), rotated
    assert (app_log.parent / rotated[1]).read_text() == "line 1\nline 2\n"
    assert app_log.read_text() == ""  # "create" from the global section of the copied file
    assert state.is_file()


def test_without_the_module_rotation_uses_numbers(copy, tmp_path):
    """Control: the same copy, untouched, rotates to app.log.1 (unless the machine already has dateext)."""
    conf, confd, app_log, _moduletmp = copy
    if any(line.strip() == "dateext" for line in conf.read_text().splitlines()):
        pytest.skip("this machine's logrotate.conf already has dateext")
    keep_only_test_entry(confd)
    forced = logrotate("-f", "-s", str(tmp_path / "state"), str(conf))
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in app_log.parent.iterdir()) == ["app.log", "app.log.1"]


def test_absent_restores_the_copy_byte_for_byte(copy, capsys):
    conf, _confd, _app_log, moduletmp = copy
    original = conf.read_text()
    run_module(capsys, moduletmp, path=str(conf))
    run_module(capsys, moduletmp, path=str(conf), state="absent")
    assert conf.read_text() == original


def test_nodateext_override_in_copied_dir_is_reported(copy, capsys, tmp_path):
    conf, confd, _app_log, moduletmp = copy
    (confd / "legacy").write_text(f"{tmp_path}/logs/legacy.log {{\n    missingok\n    nodateext\n}}\n")
    (confd / "legacy").chmod(0o644)
    result = run_module(capsys, moduletmp, path=str(conf))
    assert {"file": str(confd / "legacy"), "line": 3, "block": f"{tmp_path}/logs/legacy.log"} in result[
        "nodateext_overrides"
    ]
    debug = logrotate("-d", "-s", str(tmp_path / "state"), str(conf))
    assert debug.returncode == 0, debug.stderr
