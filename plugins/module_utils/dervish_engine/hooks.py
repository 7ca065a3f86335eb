"""pre-server, pre-client, post-client and post-server hooks.

The command is strftime-expanded with the image time (``%%`` gives ``%``). The ``DIRVISH_*``
variables are real exported environment variables, so every command of the hook sees them (Dirvish
passed them as assignment prefixes, visible to the first command only):
``DIRVISH_SERVER DIRVISH_CLIENT DIRVISH_SRC DIRVISH_DEST DIRVISH_IMAGE DIRVISH_EXCLUDE`` and, for post
hooks, ``DIRVISH_STATUS`` (``success warning error fatal``, or ``fail`` after a pre-hook failure).

* server hooks: ``sh -c <command>`` with cwd = the image tree;
* client hooks, local client: ``sh -c <command>`` with cwd = the source tree;
* client hooks, remote client: ``<rsh> <client> "sh -c '<cd src; export K=V ...; command>'"``,
  every value shell-quoted;
* client hooks written ``gate:NAME [ARG...]`` (remote clients only): ``<rsh> <client> NAME [ARG...]``,
  the bare name of a command that the client's forced command (dervish-gate) allows, without a shell,
  a ``cd`` or the ``DIRVISH_*`` variables, which the gate would refuse. NAME is a gate command name
  (letters, digits, ``. _ + -``); the arguments must be allowlisted in the client's gate.conf.

stdout goes to the image log after a label line (``Pre-Server: <command>``); stderr goes to dervish's
stderr (cron mail), as with Dirvish.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Dict, List, Optional

GATE_PREFIX = "gate:"
GATE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class HookError(Exception):
    """A hook that cannot be run as written."""


@dataclass
class HookContext:
    server: str
    client: str
    src: str
    dest: str
    image: str
    exclude: str = ""
    rsh: str = "ssh"
    local_client: bool = True
    image_time: Optional[datetime] = None
    extra_env: Dict[str, str] = field(default_factory=dict)

    def variables(self, status: Optional[str] = None) -> Dict[str, str]:
        env = {
            "DIRVISH_SERVER": self.server,
            "DIRVISH_CLIENT": self.client,
            "DIRVISH_SRC": self.src,
            "DIRVISH_DEST": self.dest,
            "DIRVISH_IMAGE": self.image,
        }
        if self.exclude:
            env["DIRVISH_EXCLUDE"] = self.exclude
        if status is not None:
            env["DIRVISH_STATUS"] = status
        return env


def label(name: str) -> str:
    """``pre-server`` -> ``Pre-Server`` (the log label Dirvish writes)."""
    return "-".join(part.capitalize() for part in name.split("-"))


def expand(command: str, when: Optional[datetime]) -> str:
    return (when or datetime.now()).strftime(command)


def remote_script(command: str, cwd: str, variables: Dict[str, str]) -> str:
    """The shell text run on a remote client (quoted once more for the remote login shell)."""
    exports = "".join(f"export {key}={shlex.quote(value)}; " for key, value in sorted(variables.items()))
    inner = f"cd {shlex.quote(cwd)} || exit 99; {exports}{command}"
    return f"sh -c {shlex.quote(inner)}"


def gate_words(command: str) -> List[str]:
    """The words of a ``gate:NAME [ARG...]`` hook; HookError for one the gate could never allow."""
    try:
        words = shlex.split(command[len(GATE_PREFIX):])
    except ValueError as exc:
        raise HookError(f"{command}: {exc}") from None
    if not words or not GATE_NAME_RE.fullmatch(words[0]):
        raise HookError(f"{command}: expected gate:NAME [ARG...] with NAME a command of the client's dervish-gate")
    return words


def build_argv(name: str, command: str, ctx: HookContext, status: Optional[str] = None):
    """(argv, cwd, env) for a hook; cwd/env are None for remote client hooks."""
    command = expand(command, ctx.image_time)
    variables = ctx.variables(status)
    if command.startswith(GATE_PREFIX) and name.endswith("-client"):
        if ctx.local_client:
            raise HookError(f"{command} needs a remote client behind dervish-gate")
        words = gate_words(command)
        remote = " ".join(shlex.quote(word) for word in words)
        return shlex.split(ctx.rsh or "ssh") + [ctx.client, remote], None, None, command
    if name.endswith("-client") and not ctx.local_client:
        argv = shlex.split(ctx.rsh or "ssh") + [ctx.client, remote_script(command, ctx.src, variables)]
        return argv, None, None, command
    env = dict(os.environ)
    env.update(ctx.extra_env)
    env.update(variables)
    cwd = ctx.src if name.endswith("-client") else ctx.dest
    return ["sh", "-c", command], cwd, env, command


def _run_and_wait(argv, **popen_args) -> int:
    return subprocess.run(argv, check=False, **popen_args).returncode


def run_hook(name: str, command: str, ctx: HookContext, log, status: Optional[str] = None,
             run_child: Callable[..., int] = _run_and_wait) -> int:
    """Run one hook; its stdout goes to ``log`` (a binary file object). Returns the exit code.

    ``run_child(argv, **popen_args)`` runs and waits for it: an image passes its own, so that a hook
    is stopped with the run and dies with the engine, as rsync does."""
    try:
        argv, cwd, env, expanded = build_argv(name, command, ctx, status)
    except HookError as exc:
        log.write((f"{label(name)}: {command}\n{label(name)}: cannot run: {exc}\n").encode("utf-8", "replace"))
        return 127
    log.write((f"{label(name)}: {expanded}\n").encode("utf-8", "surrogateescape"))
    log.flush()
    if cwd is not None and not os.path.isdir(cwd):
        cwd = None
    try:
        code = run_child(argv, cwd=cwd, env=env, stdout=log, stderr=sys.stderr.fileno()
                         if _has_fileno(sys.stderr) else None, stdin=subprocess.DEVNULL)
    except OSError as exc:
        log.write((f"{label(name)}: cannot run: {exc}\n").encode("utf-8", "replace"))
        return 127
    log.flush()
    return code if code >= 0 else 128 - code


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
