"""Hooks: argv/cwd/env construction, remote quoting, strftime expansion, real local execution."""

from __future__ import annotations

import shlex
import subprocess
from datetime import datetime

from dervish_engine import hooks


def ctx(tmp_path, **kw):
    base = dict(server="srv", client="localhost", src=str(tmp_path / "src dir"), dest=str(tmp_path / "tree"),
                image="v:default:img", exclude="", image_time=datetime(2026, 11, 26, 22, 0))
    base.update(kw)
    return hooks.HookContext(**base)


def test_label_and_expand():
    assert hooks.label("post-client") == "Post-Client"
    assert hooks.expand("backup-%Y%m%d 100%%", datetime(2026, 1, 2)) == "backup-20260102 100%"


def test_server_hook_argv(tmp_path):
    argv, cwd, env, command = hooks.build_argv("pre-server", "echo %Y", ctx(tmp_path), None)
    assert argv == ["sh", "-c", "echo 2026"] and cwd == str(tmp_path / "tree") and command == "echo 2026"
    assert env["DIRVISH_IMAGE"] == "v:default:img" and "DIRVISH_STATUS" not in env
    assert "DIRVISH_EXCLUDE" not in env and "PATH" in env


def test_local_client_hook_runs_in_source(tmp_path):
    (tmp_path / "src dir").mkdir()
    c = ctx(tmp_path)
    with open(tmp_path / "log", "ab") as log:
        code = hooks.run_hook("post-client", "pwd; echo $DIRVISH_STATUS; echo $DIRVISH_SRC; exit 3", c, log,
                              status="warning")
    assert code == 3
    text = (tmp_path / "log").read_text().splitlines()
    assert text == ["Post-Client: pwd; echo $DIRVISH_STATUS; echo $DIRVISH_SRC; exit 3", str(tmp_path / "src dir"),
                    "warning", str(tmp_path / "src dir")]


def test_remote_script_quotes_every_value(tmp_path):
    remote_src = tmp_path / "o'neil $dir"
    remote_src.mkdir()
    c = ctx(tmp_path, client="laptop", local_client=False, rsh="ssh -F '/x/ssh config'", src=str(remote_src),
            image="v:b:i")
    argv, cwd, env, unused = hooks.build_argv("pre-client", "echo \"$DIRVISH_SRC\"; touch it", c, "fail")
    assert argv[:3] == ["ssh", "-F", "/x/ssh config"] and argv[3] == "laptop" and cwd is None and env is None
    # the remote login shell runs argv[-1]; run it through a local shell the same way
    out = subprocess.run(["sh", "-c", argv[-1]], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == str(remote_src)
    inner = shlex.split(argv[-1])
    assert inner[:2] == ["sh", "-c"]
    assert (remote_src / "it").exists()
    assert "export DIRVISH_STATUS=fail;" in inner[2] and "export DIRVISH_IMAGE=v:b:i;" in inner[2]


def test_missing_shell_command_reports_127(tmp_path):
    c = ctx(tmp_path)
    with open(tmp_path / "log", "ab") as log:
        code = hooks.run_hook("pre-server", "exec /nonexistent/cmd", c, log)
    assert code == 127
