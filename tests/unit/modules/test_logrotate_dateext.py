"""Module tests for dervish.backup.logrotate_dateext: real files in tmp_path, real logrotate for validation."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.module_utils.logrotate_conf import MARKER
from ansible_collections.dervish.backup.plugins.modules import logrotate_dateext as mod

pytestmark = pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs the logrotate command")

DEBIAN_CONF = """\
# see "man logrotate" for details

# rotate log files weekly
weekly

# keep 4 weeks worth of backlogs
rotate 4

# create new (empty) log files after rotating old ones
create

# use date as a suffix of the rotated file
#dateext

# packages drop log rotation information into this directory
include {confd}

# system-specific logs may also be configured here.
"""

NGINX = """\
/var/log/nginx/*.log {
\tdaily
\tmissingok
\tnodateext
\tpostrotate
\t\tinvoke-rc.d nginx rotate >/dev/null 2>&1
\tendscript
}
"""


@pytest.fixture
def setup(tmp_path):
    confd = tmp_path / "logrotate.d"
    confd.mkdir()
    (confd / "apt").write_text("/var/log/apt/term.log {\n  rotate 12\n  monthly\n  missingok\n}\n")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(DEBIAN_CONF.format(confd=confd))
    conf.chmod(0o644)
    moduletmp = tmp_path / "moduletmp"
    moduletmp.mkdir()
    return conf, confd, moduletmp


def run(capsys, moduletmp, check=False, diff=True, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=diff, _ansible_tmpdir=str(moduletmp))
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def warnings(result):
    """Warning texts; ansible-core 2.19 returns them as WarningSummary objects."""
    out = []
    for item in result.get("warnings", []):
        out.append(item["event"]["msg"] if isinstance(item, dict) else item)
    return out


def test_check_mode_reports_diff_and_writes_nothing(setup, capsys):
    conf, _confd, moduletmp = setup
    original = conf.read_text()
    result = run(capsys, moduletmp, check=True, path=str(conf))
    assert result["changed"] is True
    assert result["diff"]["before"] == original
    assert MARKER + "\ndateext\n" in result["diff"]["after"]
    assert result["diff"]["before_header"] == result["diff"]["after_header"] == str(conf)
    assert conf.read_text() == original
    assert "backup_file" not in result
    assert sorted(os.listdir(conf.parent)) == ["logrotate.conf", "logrotate.d", "moduletmp"]


def test_apply_then_idempotent_then_absent(setup, capsys):
    conf, _confd, moduletmp = setup
    original = conf.read_text()
    inode_mode = stat.S_IMODE(conf.stat().st_mode)
    first = run(capsys, moduletmp, path=str(conf), dateformat="-%Y%m%d")
    assert first["changed"] is True and first["path"] == str(conf)
    text = conf.read_text()
    assert MARKER + "\ndateext\ndateformat -%Y%m%d\n\n# packages drop" in text
    assert stat.S_IMODE(conf.stat().st_mode) == inode_mode
    assert first["nodateext_overrides"] == []

    second = run(capsys, moduletmp, path=str(conf), dateformat="-%Y%m%d")
    assert second["changed"] is False and "diff" not in second
    assert conf.read_text() == text

    gone = run(capsys, moduletmp, path=str(conf), state="absent")
    assert gone["changed"] is True
    assert conf.read_text() == original
    again = run(capsys, moduletmp, path=str(conf), state="absent")
    assert again["changed"] is False


def test_no_diff_key_without_diff_mode(setup, capsys):
    conf, _confd, moduletmp = setup
    result = run(capsys, moduletmp, check=True, diff=False, path=str(conf))
    assert result["changed"] is True and "diff" not in result


def test_backup_file(setup, capsys):
    conf, _confd, moduletmp = setup
    original = conf.read_text()
    result = run(capsys, moduletmp, path=str(conf), backup=True)
    backup = result["backup_file"]
    assert backup.startswith(str(conf) + ".") and backup.endswith("~")
    with open(backup) as handle:
        assert handle.read() == original


def test_nodateext_overrides_are_reported_and_warned(setup, capsys):
    conf, confd, moduletmp = setup
    (confd / "nginx").write_text(NGINX)
    (confd / "nginx.dpkg-dist").write_text(NGINX)  # logrotate ignores it, so do we
    result = run(capsys, moduletmp, path=str(conf))
    assert result["nodateext_overrides"] == [
        {"file": str(confd / "nginx"), "line": 4, "block": "/var/log/nginx/*.log"}
    ]
    assert any("nodateext in " + str(confd / "nginx") + " line 4" in w for w in warnings(result))
    assert (confd / "nginx").read_text() == NGINX  # never edited


def test_existing_global_dateext_is_left_alone(tmp_path, capsys):
    conf = tmp_path / "logrotate.conf"
    conf.write_text("weekly\ndateext\ninclude /nonexistent.d\n")
    result = run(capsys, tmp_path, path=str(conf))
    assert result["changed"] is False
    absent = run(capsys, tmp_path, path=str(conf), state="absent")
    assert absent["changed"] is False
    assert any("not managed by dervish" in w for w in warnings(absent))


def test_invalid_dateformat_fails_clearly(setup, capsys):
    conf, _confd, moduletmp = setup
    original = conf.read_text()
    result = run(capsys, moduletmp, path=str(conf), dateformat="-%Y%m%d.%j")
    assert result["failed"] is True
    assert "%j" in result["msg"] and "%Y %m %d %H %M %S %V %s" in result["msg"]
    assert conf.read_text() == original


def test_unsortable_dateformat_warns(setup, capsys):
    conf, _confd, moduletmp = setup
    result = run(capsys, moduletmp, check=True, path=str(conf), dateformat="-%d%m%Y")
    assert result["changed"] is True
    assert any("does not sort by date" in w for w in warnings(result))


def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.conf"
    assert run(capsys, tmp_path, path=str(missing), state="absent")["changed"] is False
    result = run(capsys, tmp_path, path=str(missing))
    assert result["failed"] is True and "does not exist" in result["msg"]
    assert not missing.exists()


def test_unparsable_file_fails(tmp_path, capsys):
    conf = tmp_path / "logrotate.conf"
    conf.write_text("/var/log/x {\n  postrotate\n    echo hi\n}\n")
    result = run(capsys, tmp_path, path=str(conf))
    assert result["failed"] is True
    assert "cannot parse" in result["msg"] and "endscript" in result["msg"]


def test_pre_existing_logrotate_errors_only_warn(tmp_path, capsys):
    conf = tmp_path / "logrotate.conf"
    conf.write_text("weekly\nnosuchoption\n")
    conf.chmod(0o644)
    result = run(capsys, tmp_path, path=str(conf))
    assert result["changed"] is True
    assert any("already has" in w and "unknown option 'nosuchoption'" in w for w in warnings(result))
    # line numbers of the edited file do not make an old error look new
    assert str(conf) + ":N" in " ".join(warnings(result))


def test_validation_failure_leaves_file_untouched(tmp_path, capsys):
    """A candidate that logrotate rejects (new unknown directive) makes the module fail with the error."""
    conf = tmp_path / "logrotate.conf"
    conf.write_text("weekly\n")
    conf.chmod(0o644)
    args = dict(path=str(conf), _ansible_tmpdir=str(tmp_path))
    with patch_module_args(args), pytest.raises(SystemExit):
        module = AnsibleModule(argument_spec=dict(path=dict(type="path")))
        mod.validate_with_logrotate(module, "weekly\n", "weekly\nbogusdirective 3\n", str(conf))
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert "rejects the new" in result["msg"] and "unknown option 'bogusdirective'" in result["msg"]
    assert result["validation_errors"] == [f"error: {conf}:N unknown option 'bogusdirective' -- ignoring line"]
    assert conf.read_text() == "weekly\n"


def test_validation_runs_from_the_config_directory(tmp_path, capsys):
    """A relative include resolves against the directory of path, as it does for the real file."""
    confd = tmp_path / "rel.d"
    confd.mkdir()
    (confd / "app").write_text("/var/log/app.log {\n  missingok\n}\n")
    conf = tmp_path / "logrotate.conf"
    conf.write_text("weekly\ninclude rel.d\n")
    conf.chmod(0o644)
    result = run(capsys, tmp_path, path=str(conf))
    assert result["changed"] is True
    assert not any("cannot stat" in w for w in warnings(result))
