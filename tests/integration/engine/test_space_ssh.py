"""Space recorded by images of a remote client (real rsync over ssh): status needs no walk."""

from __future__ import annotations

import json

import pytest

from dervish_engine.summary import parse_summary

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SRC = "/srv/dervish-space-test"


@pytest.fixture
def remote_tree(lab):
    lab.ssh("laptop1", f"rm -rf {SRC} && mkdir -p {SRC} && head -c 100000 /dev/zero > {SRC}/a && "
            f"head -c 20000 /dev/zero > {SRC}/b")
    yield SRC
    lab.ssh("laptop1", f"rm -rf {SRC}", check=False)


def test_remote_images_record_size_and_new_bytes(lab, bank, remote_tree):
    vault = bank.vault("lap", remote_tree, f"rsh: ssh -F {lab.ssh_config}\n", client="laptop1")
    bank.run("image", "lap", "--image", "one", check=0)
    lab.ssh("laptop1", f"head -c 3000 /dev/zero > {SRC}/c")
    bank.run("image", "lap", "--image", "two", check=0)
    one = parse_summary((vault / "one" / "summary").read_text())
    two = parse_summary((vault / "two" / "summary").read_text())
    assert (one.image_bytes, one.image_new_bytes) == (120000, 120000)
    assert (two.image_bytes, two.image_new_bytes) == (123000, 3000)
    row = json.loads(bank.run("status", "--json", check=0).stdout)["vaults"][0]
    assert (row["last_good"], row["last_good_bytes"], row["last_good_new_bytes"]) == ("two", 123000, 3000)
