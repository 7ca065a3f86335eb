"""The summary's Status and the console carry the real cause of a failure (item 7)."""

from __future__ import annotations

import pytest

from dervish_engine.summary import parse_summary


def status_of(image):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape")).status


def test_over_long_rsync_option_says_so(bank, small_tree):
    # each line within the configuration's line limit, together more than the kernel takes (ARG_MAX)
    options = "".join(f"\t--filter=- {i}" + "x" * 15000 + "\n" for i in range(200))
    vault = bank.vault("v1", small_tree, "rsync-option:\n" + options)
    proc = bank.run("image", "v1", "--image", "long", check=1)
    status = status_of(vault / "long")
    assert status.startswith("fatal error (126) -- command could not be run: dervish: cannot run rsync: "
                             "Argument list too long"), status
    assert "over-long rsync-option" in status and "command not found" not in status
    assert status in proc.stderr


@pytest.mark.lab
def test_missing_remote_tree_is_named_in_status_and_console(lab, bank, tmp_path):
    rsh = f"ssh -F {lab.ssh_config}"
    vault = bank.vault("lap", "/srv/dervish-no-such-tree", f"rsh: {rsh}\n", client="laptop1")
    proc = bank.run("image", "lap", "--image", "one", check=1)
    status = status_of(vault / "one")
    assert status == "fatal error (23) -- tree not found on the client", status
    assert f"lap:default image one failed: {status}" in proc.stderr
    assert (vault / "one" / "rsync_error").read_text().count("*** Execution cycle") == 1
