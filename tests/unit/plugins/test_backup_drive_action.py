"""The action plugin of backup_drive names the default holder: one per controller run, a safe file name."""

from __future__ import annotations

import os
import re

from ansible_collections.dervish.backup.plugins.action.backup_drive import default_holder

HOLDER_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")   # the wrapper's rule


def test_default_holder_names_the_controller_and_the_run() -> None:
    assert default_holder("ctl.example.org", 4242) == "ansible-ctl-4242"
    # a worker is forked from ansible-playbook: its parent is the run, the same for every task
    assert default_holder("ctl") == f"ansible-ctl-{os.getppid()}"


def test_default_holder_is_always_a_valid_holder_name() -> None:
    for host in ("", "my host/with:odd*chars", "x" * 300, "-dash", "ünïcode"):
        name = default_holder(host, 4194304)
        assert HOLDER_RULE.match(name), name
