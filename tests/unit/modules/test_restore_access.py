"""dervish.backup.restore_access: the one-time key's line (from=, expiry-time, forced rrsync -wo to the
root), its removal by run, by expiry and for runs that are over; the gate's line is never touched;
and the run ids the controller tells over from live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.module_utils import restore_run
from ansible_collections.dervish.backup.plugins.modules import restore_access as mod

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOTn1sAmpleKeyBodyForTheTestsOnlyxxxxxxxxx dervish-restore run=x"
GATE = ('from="127.0.31.1",restrict,command="/usr/local/sbin/dervish-gate" ssh-ed25519 '
        "AAAAC3NzaC1lZDI1NTE5AAAAIGateGateGateGateGateGateGateGateGateGateGat dervish-backup@backup")


def run(capsys, check=False, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "ssh" / "authorized_keys"
    path.parent.mkdir()
    path.write_text(GATE + "\n")
    return path


def test_present_adds_a_restricted_expiring_line_limited_to_the_root(capsys, keys, tmp_path):
    root = tmp_path / "home" / "alice"
    root.mkdir(parents=True)
    out = run(capsys, path=str(keys), run_id="ctl.42.99", key=KEY, from_address="127.0.31.1",
              root=str(root / "projects"), lifetime=10)  # projects is missing: its parent is the root
    assert out["changed"] and out["root"] == str(root)
    lines = keys.read_text().splitlines()
    assert lines[0] == GATE and len(lines) == 2
    line = lines[1]
    assert line.startswith('from="127.0.31.1",restrict,expiry-time="')
    assert f' -wo {root}" ssh-ed25519 ' in line and line.endswith(f"dervish-restore run=ctl.42.99 expires={line[-10:]}")
    assert int(line.rsplit("expires=", 1)[1]) - time.time() == pytest.approx(600, abs=5)
    stamp = line.split('expiry-time="')[1][:15]
    assert stamp == time.strftime("%Y%m%d%H%M%S", time.gmtime(int(line.rsplit("expires=", 1)[1]))) + "Z"
    # the same run again replaces its line instead of adding one
    run(capsys, path=str(keys), run_id="ctl.42.99", key=KEY, from_address="127.0.31.1", root=str(root))
    assert len(keys.read_text().splitlines()) == 2


def test_a_root_through_a_symlink_is_refused_and_create_root_makes_it_private(capsys, keys, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    out = run(capsys, path=str(keys), run_id="ctl.42.99", key=KEY, from_address="127.0.31.1",
              root=str(tmp_path / "link" / "x"))
    assert out["failed"] and "symlink" in out["msg"] and keys.read_text() == GATE + "\n"
    out = run(capsys, path=str(keys), run_id="ctl.42.99", key=KEY, from_address="127.0.31.1",
              root=str(tmp_path / "restored" / "here"), create_root=True)
    assert out["root"] == str(tmp_path / "restored" / "here")
    assert oct(os.stat(out["root"]).st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("bad", [{"key": "ssh-rsa AAAA x"}, {"from_address": "backup.example.org"},
                                 {"root": "relative"}, {"root": '/a"b'}, {"run_id": "a b"}])
def test_bad_values_are_refused_before_anything_is_written(capsys, keys, tmp_path, bad):
    args = dict(path=str(keys), run_id="ctl.1.2", key=KEY, from_address="127.0.31.1", root=str(tmp_path)) | bad
    assert run(capsys, **args)["failed"] and keys.read_text() == GATE + "\n"


def line(run_id, expires):
    return (f'from="127.0.31.1",restrict,expiry-time="20261203000000Z",command="/usr/bin/rrsync -wo /h" '
            f"ssh-ed25519 AAAA{run_id.replace('.', '')} dervish-restore run={run_id} expires={expires}")


def test_absent_removes_the_run_the_expired_and_the_over_ones_never_the_gate(capsys, keys):
    future, past = int(time.time()) + 3600, int(time.time()) - 1
    keys.write_text("\n".join([GATE, line("me.1.1", future), line("old.2.2", past), line("dead.3.3", future),
                               line("other.4.4", future)]) + "\n")
    out = run(capsys, check=True, path=str(keys), state="absent", run_id="me.1.1", over_runs=["dead.3.3"])
    assert out["changed"] and out["removed"] == ["dead.3.3", "me.1.1", "old.2.2"] and "other.4.4" in keys.read_text()
    assert "me.1.1" in keys.read_text()  # check mode wrote nothing
    run(capsys, path=str(keys), state="absent", run_id="me.1.1", over_runs=["dead.3.3"])
    assert keys.read_text() == GATE + "\n" + line("other.4.4", future) + "\n"
    out = run(capsys, path=str(keys), state="listed")
    assert out["runs"] == ["other.4.4"] and not out["changed"]


def test_a_run_is_over_when_its_process_is_gone_or_another_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rid = restore_run.run_id(pid=child.pid, hostname="ctl.example.org")
        assert rid.startswith("ctl.") and not restore_run.is_over(rid, hostname="ctl")
        assert not restore_run.is_over(rid, hostname="elsewhere")  # another controller's: only by expiry
        host, pid, ticks = rid.split(".")
        assert restore_run.is_over(f"{host}.{pid}.{int(ticks) + 1}", hostname="ctl")  # a reused pid
    finally:
        child.kill()
        child.wait()
    assert restore_run.is_over(rid, hostname="ctl")
    assert not restore_run.is_over("not an id", hostname="ctl")


def test_grants_give_a_run_one_line_per_directory_and_absent_removes_them_all(capsys, keys, tmp_path):
    etc, home = tmp_path / "etc", tmp_path / "home" / "alice"
    etc.mkdir()
    home.mkdir(parents=True)
    other = KEY.replace("IOTn1sAmple", "IOTn2sAmple")
    out = run(capsys, path=str(keys), run_id="ctl.42.99", from_address="127.0.31.1",
              grants=[{"key": KEY, "root": str(etc)}, {"key": other, "root": str(home / "gone")}])
    assert out["changed"] and out["roots"] == [str(etc), str(home)]
    lines = keys.read_text().splitlines()
    assert lines[0] == GATE and len(lines) == 3
    assert f' -wo {etc}" {" ".join(KEY.split()[:2])} ' in lines[1]
    assert f' -wo {home}" {" ".join(other.split()[:2])} ' in lines[2]
    refused = run(capsys, path=str(keys), run_id="ctl.42.99", from_address="127.0.31.1", key=KEY, root=str(etc),
                  grants=[{"key": KEY, "root": str(etc)}])
    assert refused["failed"] and "either grants or key and root" in refused["msg"]
    out = run(capsys, path=str(keys), state="absent", run_id="ctl.42.99")
    assert out["changed"] and keys.read_text().splitlines() == [GATE]
