"""The dervish command line: help, exit codes, one-line errors, check, expire."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dervish_engine import cli

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


@pytest.fixture
def master(tmp_path):
    bank = tmp_path / "bank"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    for vault in ("good", "bad", "branchy"):
        (bank / vault / "dirvish").mkdir(parents=True)
        (bank / vault / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\n")
    (bank / "bad" / "dirvish" / "default.conf").write_text("client: localhost\ntree: /nonexistent\nexclde:\n\tx\n")
    (bank / "branchy" / "dirvish" / "weekly.hist").write_text("")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\nRunall:\n\tgood\n\tmissing\n")
    return master


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("exit codes:", "  3  the vault is locked", "  4  the image is good", "runall", "locate", "check"):
        assert text in out


@pytest.mark.parametrize("command", ["image", "runall", "expire", "locate", "status", "check"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: dervish " + command in capsys.readouterr().out


def test_image_help_shows_rsync_order(capsys):
    with pytest.raises(SystemExit):
        cli.main(["image", "--help"])
    out = capsys.readouterr().out
    assert "rsync -vrltH --delete [-pgo] [-D] [-A] [-X]" in out and "--link-dest=<reference>/tree" in out


def test_missing_master_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["--config", str(tmp_path / "none.conf"), "status"]) == 2
    err = capsys.readouterr().err
    assert err == f"dervish: master configuration {tmp_path / 'none.conf'} not found\n"


def test_unknown_vault_and_usage(master, capsys):
    assert cli.main(["--config", str(master), "image", "nosuch"]) == 2
    assert capsys.readouterr().err.startswith("dervish: vault 'nosuch' not found")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(master)])
    assert exc.value.code == 2


def test_check_reports_every_problem(master, capsys):
    assert cli.main(["--config", str(master), "check"]) == 2
    err = capsys.readouterr().err
    assert "bad:default:" in err and "exclde" in err
    assert "branchy:weekly: no configuration file for branch weekly" in err
    assert "Runall entry missing: vault not found" in err
    assert "good:" not in err
    assert err.strip().splitlines()[-1] == "dervish: 3 problem(s) in 3 configuration(s)"


def test_check_ok(master, capsys):
    bank = master.parent / "bank"
    import shutil

    shutil.rmtree(bank / "bad")
    shutil.rmtree(bank / "branchy")
    master.write_text(f"bank:\n\t{bank}\nRunall:\n\tgood\n")
    assert cli.main(["--config", str(master), "check"]) == 0
    assert "OK: master" in capsys.readouterr().out


def test_check_missing_local_tree(master, capsys):
    conf = master.parent / "bank" / "good" / "dirvish" / "default.conf"
    conf.write_text("client: localhost\ntree: /no/such/tree\n")
    assert cli.main(["--config", str(master), "check"]) == 2
    assert "good:default: tree /no/such/tree does not exist" in capsys.readouterr().err


def test_expire_dry_run_and_run(master, capsys):
    bank = master.parent / "bank"
    for name, expire in (("old", "+1 day == 2020-01-02 00:00:00"), ("new", "Never")):
        img = bank / "good" / name
        (img / "tree").mkdir(parents=True)
        (img / "summary").write_text(f"vault: good\nbranch: default\nImage: {name}\nImage-now: 2020-01-0"
                                     f"{1 if name == 'old' else 2} 00:00:00\nExpire: {expire}\n\nACTION: x\n"
                                     f"Backup-complete: 2020-01-0{1 if name == 'old' else 2} 00:00:00\n"
                                     "Status: success\n")
    assert cli.main(["--config", str(master), "expire", "--dry-run"]) == 0
    assert "would remove good:default:old" in capsys.readouterr().out
    assert (bank / "good" / "old").exists()
    assert cli.main(["--config", str(master), "expire"]) == 0
    assert "removed good:default:old" in capsys.readouterr().out
    assert not (bank / "good" / "old").exists() and (bank / "good" / "new").exists()


def test_python_dash_m(master):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    proc = subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), "status", "--json"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '"vaults"' in proc.stdout


def test_config_after_the_subcommand(master, capsys):
    assert cli.main(["status", "--config", str(master), "--json"]) == 0
    assert '"vaults"' in capsys.readouterr().out


def test_os_error_is_one_line(master, capsys):
    # the lock's flock file is a directory: open() fails with an OSError -> one line, exit 2 (not started)
    (master.parent / "bank" / "good" / "dirvish" / "lock_file.flock").mkdir()
    assert cli.main(["--config", str(master), "image", "good", "--image", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dervish: bank ") and "lock_file.flock: Is a directory" in err
    assert "[Errno" not in err and len(err.strip().splitlines()) == 1


def test_broken_pipe_is_quiet_exit_0(master, capsys, monkeypatch):
    # a reader that stopped early (dervish status | head) is not an error; BrokenPipeError is an OSError,
    # so its clause must come first
    def closed_pipe(args, master, con):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "status", closed_pipe)
    assert cli.main(["--config", str(master), "status"]) == 0
    assert capsys.readouterr().err == ""


def test_importing_main_module_runs_nothing(capsys):
    import importlib

    importlib.import_module("dervish_engine.__main__")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
