# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A benchmark's callback (not shipped with the collection's plugins): appends each snapshot task's
result, one JSON line per host, to the file named by DERVISH_BENCH_RESULTS, so a benchmark can time a
plain ``ansible-playbook`` run (as a user waits for it) and still read the engine's own image times."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_images
type: aggregate
short_description: Write snapshot results for the dervish benchmarks
description: Appends each snapshot task result as a JSON line to the file named by DERVISH_BENCH_RESULTS.
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_images"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, failed):
        path = os.environ.get("DERVISH_BENCH_RESULTS")
        if not path or "snapshot" not in result.task_name and "snapshot" not in str(result._task.action):
            return
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"host": result._host.get_name(), "failed": failed,
                                     "res": result._result}, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, True)
