# Copyright: dervish developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's master configuration for a module that reads the banks (backup_status, expire)."""

from __future__ import annotations

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.config import load_master
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.errors import DervishError
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine.status import (
    missing_bank_message,
    missing_banks,
)


def master_with_banks(module, result, nothing_done=""):
    """The master configuration of the module's ``config`` option, every bank of it present; else the
    module fails with one line (the engine's error, or every missing bank and ``nothing_done``).

    A ``result`` with a ``missing_banks`` key gets the missing banks in it (backup_status returns them).
    """
    try:
        master = load_master(module.params["config"])
    except DervishError as exc:
        module.fail_json(msg=str(exc), **result)
    missing = missing_banks(master.banks)
    if "missing_banks" in result:
        result["missing_banks"] = missing
    if missing:
        module.fail_json(msg="; ".join(missing_bank_message(bank) for bank in missing) + nothing_done, **result)
    return master
