# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs restore_access; for a removal it first asks which restore runs have lines on the client and
tells the module which of them are runs of this controller that are over (a killed ansible-playbook),
which only the controller can know."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.dervish.backup.plugins.module_utils.restore_run import is_over

MODULE = "dervish.backup.restore_access"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        if args.get("state", "present") == "absent":
            listing = self._execute_module(module_name=MODULE, module_args={**args, "state": "listed"},
                                           task_vars=task_vars)
            if listing.get("failed"):
                result.update(listing)
                return result
            args["over_runs"] = [run for run in listing.get("runs", []) if is_over(run)]
        result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        return result
