"""A vault that a live run is imaging is ``busy``: reported at once, nothing written to it, exit 3,
and ``runall`` does not count it as failed. Real locks held by real processes, real local rsync."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from dervish_engine import cli, lock, slots
from dervish_engine.config import load_master
from dervish_engine.image import ImageOptions, ImageRun
from dervish_engine.runall import run_all

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"

LOCK_HOLDER = textwrap.dedent("""
    import sys, time
    from dervish_engine import lock
    lock.acquire(sys.argv[1], sys.argv[2], sys.argv[1] + "/theirs")
    print("locked", flush=True)
    time.sleep(120)
""")


class Site:
    """A master with one bank and local vaults (tree = a small source directory)."""

    def __init__(self, root: Path, jobs: int = 1):
        self.root = root
        self.bank = root / "bank"
        self.src = root / "src"
        self.src.mkdir(parents=True)
        (self.src / "a").write_text("a\n")
        (self.src / "b").write_text("b" * 5000)
        self.master_path = root / "master.conf"
        self.vaults = []
        self.jobs = jobs
        self.slot_dir = root / "slots"

    def vault(self, name: str) -> Path:
        conf = self.bank / name / "dirvish" / "default.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(f"client: localhost\ntree: {self.src}\n")
        self.vaults.append(name)
        self.master_path.write_text(f"bank:\n\t{self.bank}\nRunall:\n" + "".join(f"\t{v}\n" for v in self.vaults)
                                    + f"Runall-jobs: {self.jobs}\n")
        return self.bank / name

    def master(self):
        return load_master(str(self.master_path))


def snapshot(directory: Path):
    """Every path below ``directory`` with its content (files) and mtime: to prove nothing changed."""
    found = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        found[str(path)] = (st.st_mtime_ns, path.read_bytes() if path.is_file() else None)
    return found


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv(slots.ENV_DIR, str(tmp_path / "slots"))
    return Site(tmp_path)


@pytest.fixture
def hold_lock():
    procs = []

    def _hold(vault_dir: Path, vault: str):
        env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
        proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(vault_dir), vault],
                                stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield _hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_vault_locked_by_a_live_run_is_busy_and_untouched(site, hold_lock):
    vault_dir = site.vault("v")
    holder = hold_lock(vault_dir, "v")
    before = snapshot(vault_dir)
    result = ImageRun(site.master(), "v", options=ImageOptions(image="mine")).run()
    assert result.status == "busy" and result.busy and not result.good
    assert result.exit_code == 3 and result.image_dir is None
    assert result.error.startswith(f"vault v is being backed up by PID {holder.pid} since ")
    assert result.summary_status.startswith("busy -- vault v is being backed up")
    assert snapshot(vault_dir) == before
    assert lock.read_lock(vault_dir).pid == holder.pid


def test_busy_is_reported_at_once_without_waiting_for_a_slot(site, hold_lock):
    vault_dir = site.vault("v")
    hold_lock(vault_dir, "v")
    slot = slots.try_acquire(site.slot_dir, 1, "someone else")  # every slot taken
    try:
        start = time.monotonic()
        result = ImageRun(site.master(), "v").run()
        assert result.status == "busy" and time.monotonic() - start < 5
    finally:
        slot.release()


def test_a_vault_locked_while_waiting_for_a_slot_is_busy(site, hold_lock):
    vault_dir = site.vault("v")
    slot = slots.try_acquire(site.slot_dir, 1, "another image")
    messages = []
    results = []
    run = ImageRun(site.master(), "v", options=ImageOptions(image="mine"), report=messages.append)
    thread = threading.Thread(target=lambda: results.append(run.run()))
    thread.start()
    try:
        end = time.monotonic() + 10
        while not messages and time.monotonic() < end:
            time.sleep(0.02)
        assert messages and messages[0].startswith("waiting for an image slot: all 1 (Runall-jobs: 1) are in use")
        assert "another image" in messages[0]
        assert not lock.is_locked(vault_dir)  # a waiting run does not hold its vault
        holder = hold_lock(vault_dir, "v")
    finally:
        slot.release()
    thread.join(30)
    assert results and results[0].status == "busy" and str(holder.pid) in results[0].error
    assert not (vault_dir / "mine").exists()
    assert slots.try_acquire(site.slot_dir, 1) is not None  # the busy run gave its slot back


def test_dervish_image_exits_3_with_one_line(site, hold_lock, capsys):
    vault_dir = site.vault("v")
    holder = hold_lock(vault_dir, "v")
    code = cli.main(["--config", str(site.master_path), "image", "v"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    assert err.startswith(f"dervish: vault v is being backed up by PID {holder.pid} since ")
    assert err.rstrip().endswith(": busy, no image made") and err.count("\n") == 1


def test_runall_reports_busy_and_does_not_count_it_as_failed(site, hold_lock):
    site.vault("a")
    busy_dir = site.vault("b")
    hold_lock(busy_dir, "b")
    lines = []
    code = run_all(site.master(), out=lines.append, report=lines.append)
    assert code == 0, lines
    assert any(line.endswith("a done (success)") for line in lines), lines
    assert any(" b done (busy: vault b is being backed up by PID " in line for line in lines), lines
    assert lines[-1].endswith("busy (being imaged by another run, not counted as failed): b")
    assert [p.name for p in busy_dir.iterdir()] == ["dirvish"]


def test_runall_counts_failures_but_not_busy(site, hold_lock):
    site.vault("a")
    hold_lock(site.vault("b"), "b")
    bad = site.vault("c")
    (bad / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {site.src}\npre-server: exit 5\n")
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = cli.main(["--config", str(site.master_path), "runall"])
    assert code == 1, out.getvalue()


def test_dry_run_takes_no_slot(site):
    site.vault("v")
    slot = slots.try_acquire(site.slot_dir, 1, "someone else")
    try:
        start = time.monotonic()
        result = ImageRun(site.master(), "v", options=ImageOptions(dry_run=True), stdout=io.StringIO()).run()
        assert result.status == "dry-run" and time.monotonic() - start < 5
    finally:
        slot.release()


def test_runall_jobs_above_the_slots_is_limited_and_said(site):
    site.vault("a")
    site.vault("b")
    lines = []
    assert run_all(site.master(), jobs=3, out=lines.append, report=lines.append) == 0
    assert any("--jobs 3 is above the server's limit Runall-jobs: 1: at most 1 image(s) at once" in line
               for line in lines)


@pytest.mark.parametrize("argv", [["--help"], ["image", "--help"], ["runall", "--help"]])
def test_help_documents_slots_and_busy(argv, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for words in ("Runall-jobs: N", "/run/lock/dervish-slots/slot-1", "$DERVISH_SLOT_DIR", "--dry-run takes none",
                  "the lower of the two holds", "busy", "a killed run frees its slot"):
        assert words in text, words
