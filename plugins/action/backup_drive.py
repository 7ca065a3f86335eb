# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the module backup_drive with a holder that names this controller run by default."""

from __future__ import annotations

import os
import re
import socket

from ansible.plugins.action import ActionBase


def default_holder(hostname: str | None = None, pid: int | None = None) -> str:
    """``ansible-<controller host>-<ansible-playbook pid>``: the same for every task of one run.

    Workers are forked from the ansible-playbook process, so a worker's parent is the run itself.
    The host name is cut to a safe file name (the wrapper's rule for a holder).
    """
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    host = re.sub(r"[^A-Za-z0-9._-]", "-", host)[:60] or "controller"
    return f"ansible-{host}-{pid if pid is not None else os.getppid()}"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get("holder"):
            args["holder"] = default_holder()
        result.update(self._execute_module(module_name="dervish.backup.backup_drive", module_args=args,
                                           task_vars=task_vars))
        return result
