"""Client hooks through the client's dervish-gate: ``gate:NAME`` is sent as the bare command NAME."""

from __future__ import annotations

import io
import sys
from datetime import datetime

import pytest

from dervish_engine import hooks


def ctx(tmp_path, local=False, rsh="ssh -i /root/.ssh/k"):
    return hooks.HookContext(server="backup", client="laptop1", src="/home", dest=str(tmp_path),
                             image="2026-01-01", rsh=rsh, local_client=local,
                             image_time=datetime(2026, 1, 2))


def test_a_gate_hook_is_sent_as_the_bare_command_name(tmp_path) -> None:
    argv, cwd, env, shown = hooks.build_argv("pre-client", "gate:dervish-pre-client-laptop1-home", ctx(tmp_path))
    assert argv == ["ssh", "-i", "/root/.ssh/k", "laptop1", "dervish-pre-client-laptop1-home"]
    assert (cwd, env, shown) == (None, None, "gate:dervish-pre-client-laptop1-home")


def test_a_gate_hook_keeps_allowlisted_arguments_quoted(tmp_path) -> None:
    argv, *dummy = hooks.build_argv("post-client", "gate:db-dump --since %Y 'a b'", ctx(tmp_path))
    assert argv[-1] == "db-dump --since 2026 'a b'"


@pytest.mark.parametrize("command", ["gate:", "gate:sh -c 'id", "gate:../x", "gate:a;id"])
def test_a_bad_gate_hook_is_an_error(tmp_path, command) -> None:
    with pytest.raises(hooks.HookError):
        hooks.build_argv("pre-client", command, ctx(tmp_path))


def test_a_gate_hook_of_a_local_client_is_an_error_logged(tmp_path) -> None:
    log = io.BytesIO()
    code = hooks.run_hook("pre-client", "gate:x", ctx(tmp_path, local=True), log)
    assert code == 127
    assert b"gate:x needs a remote client behind dervish-gate" in log.getvalue()


def test_a_plain_remote_hook_still_goes_through_sh(tmp_path) -> None:
    argv, *dummy = hooks.build_argv("pre-client", "echo hi", ctx(tmp_path))
    assert argv[-1].startswith("sh -c ")


def test_a_gate_hook_runs_for_real_through_a_fake_ssh(tmp_path) -> None:
    fake = tmp_path / "fake-ssh"
    fake.write_text(f"#!/bin/sh\nshift\nexec {sys.executable} -c 'import sys; print(\"ran\", sys.argv[1:])' \"$@\"\n")
    fake.chmod(0o755)
    with open(tmp_path / "log", "wb") as log:
        assert hooks.run_hook("pre-client", "gate:dump", ctx(tmp_path, rsh=str(fake)), log) == 0
    assert (tmp_path / "log").read_bytes() == b"Pre-Client: gate:dump\nran ['dump']\n"
