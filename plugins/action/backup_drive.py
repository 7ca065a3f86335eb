# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the module backup_drive with a holder that names this controller run by default."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.drive_holder import default_holder


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
