"""Bad input files: NUL bytes, FIFOs and huge junk lines give one line naming file and problem.

Every case runs the real ``dervish`` command in a subprocess with a timeout, so a hang fails the test
instead of hanging the suite, and a traceback shows up in stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dervish_engine import confgrammar as g
from dervish_engine.errors import ConfigError

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
GOOD_SUMMARY = ("client: localhost\ntree: /src\nvault: v\nbranch: default\nImage: {name}\n"
                "Image-now: 2026-11-20 10:00:00\nExpire: +15 days == 2026-12-05 10:00:00\n\nACTION: rsync\n"
                "Backup-begin: 2026-11-20 10:00:00\n"
                "Backup-complete: 2026-11-20 10:05:00\nStatus: success\n")


def run(master, *args, timeout=20):
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.fixture
def site(tmp_path):
    bank = tmp_path / "bank"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (bank / "v" / "dirvish").mkdir(parents=True)
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\n")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    return master, bank, src


@pytest.fixture
def alarm():
    """Fail an in-process read that blocks (a FIFO) after 10 s instead of hanging the suite."""

    def ring(_signum, _frame):
        raise TimeoutError("blocked reading a file")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def assert_one_line_error(proc, *needles):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dervish:")]
    assert errors, proc.stderr
    for needle in needles:
        assert any(needle in line for line in errors), proc.stderr


@pytest.mark.parametrize("command", ["check", "status", "expire"])
def test_nul_byte_in_master_value(site, command):
    master, bank, dummy = site
    master.write_bytes(b"bank:\n\t" + os.fsencode(str(bank))[:-2] + b"\0" + os.fsencode(str(bank))[-2:] + b"\n")
    proc = run(master, command)
    assert_one_line_error(proc, f"{master}:2:", "NUL")


def test_nul_byte_in_vault_value_fails_before_an_image_is_made(site):
    master, bank, src = site
    (bank / "v" / "dirvish" / "default.conf").write_bytes(
        b"client: localhost\ntree: " + os.fsencode(str(src)) + b"\0x\n")
    proc = run(master, "image", "v")
    assert_one_line_error(proc, "default.conf:2:", "NUL")
    assert proc.returncode == 2
    assert sorted(p.name for p in (bank / "v").iterdir()) == ["dirvish"]  # no failed image left behind


def test_nul_byte_is_rejected_by_the_grammar_with_file_and_line():
    with pytest.raises(ConfigError, match=r"^f\.conf:3: .*NUL byte"):
        g.parse_text("a: 1\nb: 2\nexclude: x\0y\n", "f.conf")


@pytest.mark.parametrize("command", [("status",), ("expire", "--dry-run"), ("locate", "v", "f")])
def test_fifo_named_summary_does_not_hang(site, command):
    master, bank, dummy = site
    good = bank / "v" / "20261120"
    (good / "tree").mkdir(parents=True)
    (good / "summary").write_text(GOOD_SUMMARY.format(name="20261120"))
    bad = bank / "v" / "20261121"
    (bad / "tree").mkdir(parents=True)
    os.mkfifo(bad / "summary")
    proc = run(master, *command)  # a hang raises TimeoutExpired
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{bad / 'summary'}: not a regular file" in proc.stderr


def test_fifo_as_config_file(site, alarm):
    master, bank, dummy = site
    conf = bank / "v" / "dirvish" / "default.conf"
    conf.unlink()
    os.mkfifo(conf)
    proc = run(master, "check")  # config.py looks only for regular files: the FIFO is not taken
    assert_one_line_error(proc, "v:default: cannot find config file 'default'")
    assert proc.returncode == 2
    with pytest.raises(ConfigError, match=f"^{conf}: not a regular file \\(a FIFO\\)"):
        g.parse_file(conf)  # and the grammar refuses it should anything name it directly


def test_fifo_as_lock_file_does_not_hang_status(site):
    master, bank, dummy = site
    os.mkfifo(bank / "v" / "dirvish" / "lock_file")
    proc = run(master, "status")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_huge_junk_line_is_not_copied_into_the_message(site):
    master, bank, dummy = site
    junk = "x" * (5 << 20)
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: localhost\n{junk}\n")
    proc = run(master, "check")
    assert_one_line_error(proc, "default.conf:2:")
    assert len(proc.stderr) < 1000


def test_huge_value_is_not_copied_into_the_message(site):
    master, bank, dummy = site
    conf = bank / "v" / "dirvish" / "default.conf"
    conf.write_text("client: localhost\nexpire-default: +" + "9" * (5 << 20) + "\n")
    proc = run(master, "check")
    assert_one_line_error(proc, "default.conf:2:")
    assert len(proc.stderr) < 1000


def test_long_summary_lines_are_still_read():
    # summaries are written by the engine (long ACTION lines with many options): tolerant mode reads them
    text = "vault: v\nACTION: rsync " + "--opt " * 5000 + "\nStatus: success\n"
    statements = g.parse_text(text, strict=False, comments=False)
    assert statements[-1].value == "success"


def test_read_regular_file_refuses_devices_and_directories(tmp_path, alarm):
    with pytest.raises(ConfigError, match="not a regular file"):
        g.read_text_file("/dev/null")
    with pytest.raises(ConfigError, match="not a regular file"):
        g.read_text_file(tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        g.read_text_file(tmp_path / "missing")


def test_fifo_as_file_exclude_does_not_hang_check(site):
    master, bank, src = site
    fifo = bank / "v" / "dirvish" / "excludes"
    os.mkfifo(fifo)
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\nfile-exclude: {fifo}\n")
    proc = run(master, "check")
    assert_one_line_error(proc, f"{fifo}: not a regular file (a FIFO)")


def test_nul_byte_in_a_file_exclude_file(site):
    master, bank, src = site
    excludes = bank / "v" / "dirvish" / "excludes"
    excludes.write_bytes(b"*.tmp\n*.o\0bak\n")
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\nfile-exclude: {excludes}\n")
    proc = run(master, "check")
    assert_one_line_error(proc, f"{excludes}:2:", "NUL")


def test_fifo_as_hist_file_fails_the_image_before_anything_is_made(site):
    master, bank, dummy = site
    os.mkfifo(bank / "v" / "dirvish" / "default.hist")
    proc = run(master, "image", "v")
    assert_one_line_error(proc, f"{bank / 'v' / 'dirvish' / 'default.hist'}: not a regular file (a FIFO)")
    assert proc.returncode == 2
    assert sorted(p.name for p in (bank / "v").iterdir()) == ["dirvish"]
    assert not (bank / "v" / "dirvish" / "lock_file").exists()


def test_expire_of_one_vault_names_the_missing_bank(site, tmp_path):
    master, bank, dummy = site
    master.write_text(f"bank:\n\t{tmp_path / 'unmounted'}\n\t{bank}\n")
    proc = run(master, "expire", "--vault", "nosuch")
    assert f"bank {tmp_path / 'unmounted'} does not exist" in proc.stderr and proc.returncode == 2
