# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the module backup_drive with a holder that names this controller run by default.

A release (every playbook run ends with one, also after failures) runs the server's wrapper with one
plain command instead: shipping and starting the module cost more than the release itself, and the
result is made by the same functions as the module's (module_utils/drive_holds.py). Check mode, holds
and anything unusual go to the module.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.drive_holder import default_holder
from ansible_collections.dervish.backup.plugins.module_utils.drive_holds import (
    DEFAULT_WRAPPER,
    HOLDER_RE,
    release_command,
    release_result,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get("holder"):
            args["holder"] = default_holder()
        if self._plain_release(args):
            answer = self._low_level_execute_command(release_command(DEFAULT_WRAPPER, args["holder"]))
            result.update(release_result(DEFAULT_WRAPPER, args["holder"], answer.get("stdout", ""),
                                         answer.get("stderr", "")))
            return result
        result.update(self._execute_module(module_name="dervish.backup.backup_drive", module_args=args,
                                           task_vars=task_vars))
        return result

    def _plain_release(self, args):
        """A release the module would do just so: the module checks and reports everything else."""
        return (args.get("state") == "released" and set(args) <= {"state", "holder"}
                and isinstance(args["holder"], str) and HOLDER_RE.match(args["holder"]) is not None
                and not self._task.check_mode)
