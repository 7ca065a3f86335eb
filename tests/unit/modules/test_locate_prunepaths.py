"""Module tests for dervish.backup.locate_prunepaths on real files in tmp_path."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import locate_prunepaths as mod

PLOCATE_CONF = """\
PRUNE_BIND_MOUNTS="yes"
# PRUNENAMES=".git .bzr .hg .svn"
PRUNEPATHS="/tmp /var/spool /media /var/lib/os-prober /var/lib/ceph /home/.ecryptfs /var/lib/schroot"
PRUNEFS="NFS afs autofs binfmt_misc ceph proc sysfs tmpfs"
"""

SLOCATE_CRON = """\
#!/bin/sh
renice +19 -p $$ >/dev/null 2>&1
/usr/bin/updatedb -f "nfs,smbfs,ncpfs,proc,devpts" -e "/tmp,/var/tmp,/usr/tmp,/afs,/net"
"""


@pytest.fixture
def files(tmp_path):
    conf = tmp_path / "updatedb.conf"
    conf.write_text(PLOCATE_CONF)
    conf.chmod(0o644)
    cron = tmp_path / "slocate.cron"
    cron.write_text(SLOCATE_CRON)
    cron.chmod(0o755)
    return conf, cron


def run(capsys, check=False, diff=True, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def warnings(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def test_check_mode_diff_for_each_file_and_no_write(files, capsys):
    conf, cron = files
    result = run(capsys, check=True, paths=["/backup"], path=str(conf), slocate_cron=[str(cron)])
    assert result["changed"] is True
    assert result["files_changed"] == [str(conf), str(cron)]
    assert [d["before_header"] for d in result["diff"]] == [str(conf), str(cron)]
    assert result["diff"][0]["before"] == PLOCATE_CONF
    assert '/var/lib/schroot /backup"' in result["diff"][0]["after"]
    assert '/afs,/net,/backup"' in result["diff"][1]["after"]
    assert result["prunepaths"][-1] == "/backup"
    assert result["slocate_excludes"] == {str(cron): ["/tmp", "/var/tmp", "/usr/tmp", "/afs", "/net", "/backup"]}
    assert conf.read_text() == PLOCATE_CONF and cron.read_text() == SLOCATE_CRON
    assert sorted(os.listdir(conf.parent)) == ["slocate.cron", "updatedb.conf"]


def test_apply_idempotent_and_absent(files, capsys):
    conf, cron = files
    args = dict(paths=["/backup/", "/srv/bank"], path=str(conf), slocate_cron=[str(cron)])
    first = run(capsys, **args)
    assert first["changed"] is True
    assert 'PRUNEPATHS="/tmp /var/spool /media /var/lib/os-prober /var/lib/ceph /home/.ecryptfs ' \
           '/var/lib/schroot /backup /srv/bank"\n' in conf.read_text()
    assert '-e "/tmp,/var/tmp,/usr/tmp,/afs,/net,/backup,/srv/bank"' in cron.read_text()
    # the cron script stays executable, the conf keeps its mode
    assert stat.S_IMODE(cron.stat().st_mode) == 0o755
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644

    second = run(capsys, **args)
    assert second["changed"] is False and second["files_changed"] == [] and "diff" not in second
    assert second["prunepaths"] == first["prunepaths"]

    gone = run(capsys, **dict(args, state="absent"))
    assert gone["changed"] is True
    assert conf.read_text() == PLOCATE_CONF and cron.read_text() == SLOCATE_CRON
    assert "/backup" not in gone["prunepaths"]
    assert run(capsys, **dict(args, state="absent"))["changed"] is False


def test_absent_removes_only_listed_paths(files, capsys):
    conf, _cron = files
    result = run(capsys, paths=["/media"], state="absent", path=str(conf), slocate_cron=[])
    assert result["changed"] is True
    assert 'PRUNEPATHS="/tmp /var/spool /var/lib/os-prober' in conf.read_text()
    assert "/media" not in result["prunepaths"] and "/tmp" in result["prunepaths"]


def test_missing_cron_script_is_skipped(files, tmp_path, capsys):
    conf, _cron = files
    result = run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[str(tmp_path / "nope.cron")])
    assert result["files_changed"] == [str(conf)]
    assert result["slocate_excludes"] == {}
    assert not (tmp_path / "nope.cron").exists()


def test_missing_variable_is_added(tmp_path, capsys):
    conf = tmp_path / "updatedb.conf"
    conf.write_text('PRUNE_BIND_MOUNTS="yes"\n')
    result = run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[])
    assert result["changed"] is True
    assert conf.read_text() == 'PRUNE_BIND_MOUNTS="yes"\nPRUNEPATHS="/backup"\n'


def test_missing_file_is_created_by_default(tmp_path, capsys):
    conf = tmp_path / "updatedb.conf"
    check = run(capsys, check=True, paths=["/backup"], path=str(conf), slocate_cron=[])
    assert check["changed"] is True and check["diff"][0]["before"] == "" and not conf.exists()
    result = run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[])
    assert result["changed"] is True and result["prunepaths"] == ["/backup"]
    text = conf.read_text()
    assert text.startswith("# updatedb.conf: created by dervish") and text.endswith('PRUNEPATHS="/backup"\n')
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644 & ~_umask()
    assert run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[])["changed"] is False


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_missing_file_not_created_with_create_false_or_absent(tmp_path, capsys):
    conf = tmp_path / "updatedb.conf"
    result = run(capsys, paths=["/backup"], path=str(conf), create=False, slocate_cron=[])
    assert result["changed"] is False and result["prunepaths"] == []
    assert run(capsys, paths=["/backup"], path=str(conf), state="absent", slocate_cron=[])["changed"] is False
    assert not conf.exists()


@pytest.mark.parametrize("bad", ["backup", "/my backup", '/"x"', "/x'y"])
def test_invalid_path_fails_naming_option_and_value(files, capsys, bad):
    conf, cron = files
    result = run(capsys, paths=["/ok", bad], path=str(conf), slocate_cron=[str(cron)])
    assert result["failed"] is True
    assert result["msg"].startswith("paths: ") and repr(bad) in result["msg"]
    assert conf.read_text() == PLOCATE_CONF


def test_comma_in_path_fails_only_for_slocate(files, capsys):
    conf, cron = files
    ok = run(capsys, check=True, paths=["/a,b"], path=str(conf), slocate_cron=[])
    assert ok["changed"] is True
    bad = run(capsys, paths=["/a,b"], path=str(conf), slocate_cron=[str(cron)])
    assert bad["failed"] is True and str(cron) in bad["msg"] and "comma" in bad["msg"]
    assert conf.read_text() == PLOCATE_CONF


def test_backup_files(files, capsys):
    conf, cron = files
    result = run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[str(cron)], backup=True)
    assert set(result["backup_files"]) == {str(conf), str(cron)}
    with open(result["backup_files"][str(conf)]) as handle:
        assert handle.read() == PLOCATE_CONF


def test_quoting_warning_is_passed_on(tmp_path, capsys):
    conf = tmp_path / "updatedb.conf"
    conf.write_text("PRUNEPATHS='/tmp'\n")
    result = run(capsys, paths=["/backup"], path=str(conf), slocate_cron=[])
    assert conf.read_text() == "PRUNEPATHS='/tmp /backup'\n"
    assert any("single-quoted" in w for w in warnings(result))


def test_empty_paths_list_is_a_noop(files, capsys):
    conf, cron = files
    result = run(capsys, paths=[], path=str(conf), slocate_cron=[str(cron)])
    assert result["changed"] is False
    assert len(result["prunepaths"]) == 7
