"""The wrapper dervish-backup's drive-hold options: usage errors (exit 64) before anything is touched,
--help, and shellcheck of the rendered script. The holds themselves are proved in the lab
(tests/integration/site/test_drive_holds.py)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "roles" / "backup_server" / "templates"


def render(tmp_path: Path, drive_spec: str = "LABEL=BACKUPDRIVE") -> Path:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    text = env.get_template("usr/local/sbin/dervish-backup.j2").render(
        ansible_managed="managed", __backup_server_drive_spec=drive_spec,
        __backup_server_drive={"mount_point": str(tmp_path / "mnt"), "mount_options": "noatime"},
        backup_server_banks=[str(tmp_path / "mnt" / "dervish")], __backup_server_vault_confdir="/nonexistent",
        __backup_server_confdir="/nonexistent", backup_server_drivelog=str(tmp_path / "drivelog"),
        backup_server_drive_hold_grace=900, backup_server_nice=0, backup_server_ionice_class="none",
        backup_server_ionice_level=7)
    script = tmp_path / "dervish-backup"
    script.write_text(text)
    script.chmod(0o700)
    return script


def run(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), *args], text=True, capture_output=True, timeout=30, check=False,
                          env={**os.environ, **env})


@pytest.mark.parametrize("args, message", [
    (("--acquire", "../etc"), "HOLDER '../etc' is not a valid holder name: expected 1-100 characters"),
    (("--acquire", "a/b"), "is not a valid holder name"),
    (("--acquire", ".hidden"), "is not a valid holder name"),
    (("--acquire", "-x"), "is not a valid holder name"),
    (("--acquire", "x" * 101), "is not a valid holder name"),
    (("--release", "a b"), "is not a valid holder name"),
    (("--acquire",), "--acquire needs a HOLDER"),
    (("--acquire", "ok", "--pid", "12x"), "--pid '12x' is not a process id"),
    (("--acquire", "ok", "--pid", "999999999"), "--pid 999999999: no such process"),
    (("--release", "ok", "--pid", "1"), "--pid goes with --acquire only"),
    (("--acquire", "ok", "--release", "ok"), "only one of --acquire, --release and --holds"),
    (("--acquire", "ok", "laptop1-etc"), "--acquire takes no --prepare-only, --no-expire or VAULT"),
    (("--bogus",), "unknown option --bogus"),
])
def test_usage_errors_exit_64_with_one_clear_line(tmp_path: Path, args, message) -> None:
    script = render(tmp_path)
    result = run(script, *args)
    assert result.returncode == 64, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dervish-backup"], "nothing may be written"


def test_a_bad_grace_override_is_a_usage_error(tmp_path: Path) -> None:
    result = run(render(tmp_path), "--acquire", "ok", DERVISH_BACKUP_HOLD_GRACE="15m")
    assert result.returncode == 64
    assert "DERVISH_BACKUP_HOLD_GRACE '15m' is not a number of seconds" in result.stderr


def test_good_holder_names_pass_the_check(tmp_path: Path) -> None:
    # a valid name gets past the usage checks (then fails with "no such process", not the name)
    for name in ("nightly-123", "ansible-ctl.example.org-4242", "A_b.c-9", "x" * 100):
        result = run(render(tmp_path), "--acquire", name, "--pid", "999999999")
        assert "no such process" in result.stderr and "holder name" not in result.stderr, name


def test_help_documents_the_holds(tmp_path: Path) -> None:
    result = run(render(tmp_path), "--help")
    assert result.returncode == 0
    for text in ("--acquire HOLDER [--pid PID]", "--release HOLDER", "--holds", "DISKLABEL=<label>",
                 "900 s", "DERVISH_BACKUP_HOLD_GRACE", "/run/dervish/holds", "64 usage error"):
        assert text in result.stdout, text
    assert "set -uo" not in result.stdout and "{{" not in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("drive_spec", ["LABEL=BACKUPDRIVE", ""])
def test_rendered_wrapper_passes_shellcheck(tmp_path: Path, drive_spec: str) -> None:
    result = subprocess.run(["shellcheck", str(render(tmp_path, drive_spec))], text=True, capture_output=True,
                            check=False)
    assert result.returncode == 0, result.stdout
