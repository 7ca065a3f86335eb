"""A remote client over ssh: dervish on this machine images a tree that lives on lab host laptop1."""

from __future__ import annotations

import os
import shlex

import pytest

from dervish_engine import rsync
from dervish_engine.summary import parse_summary

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SRC = "/srv/dervish-ssh-test"


@pytest.fixture
def remote_tree(lab):
    lab.ssh("laptop1", f"rm -rf {SRC} && mkdir -p {SRC}/sub\\ dir && cd {SRC} && for i in $(seq 1 200); do "
            "echo file $i > sub\\ dir/f$i.txt; done && ln -s sub\\ dir/f1.txt link && ln sub\\ dir/f2.txt hard")
    yield SRC
    lab.ssh("laptop1", f"rm -rf {SRC} /tmp/dervish-hook.env", check=False)


def test_remote_client_images_and_hard_links(lab, bank, remote_tree, tmp_path):
    rsh = f"ssh -F {lab.ssh_config}"
    hook = "env | grep ^DIRVISH_ | sort > /tmp/dervish-hook.env; hostname >> /tmp/dervish-hook.env"
    vault = bank.vault("lap", remote_tree, f"rsh: {rsh}\npre-client: {hook}\n", client="laptop1")
    first = bank.run("image", "lap", "--image", "one", check=0)
    assert "success" in first.stdout
    s = parse_summary((vault / "one" / "summary").read_text())
    assert s.client == "laptop1" and s.rsh == rsh
    assert shlex.join(["-e", rsync.bounded_rsh(rsh, 600)]) in s.action  # ssh bounded by ConnectTimeout etc.
    assert f"laptop1:{remote_tree}/" in s.action
    tree1 = vault / "one" / "tree"
    assert (tree1 / "sub dir" / "f200.txt").read_text() == "file 200\n"
    assert os.readlink(tree1 / "link") == "sub dir/f1.txt"
    assert (tree1 / "hard").stat().st_ino == (tree1 / "sub dir" / "f2.txt").stat().st_ino
    env = lab.ssh("laptop1", "cat /tmp/dervish-hook.env").stdout
    assert "DIRVISH_IMAGE=lap:default:one" in env and env.splitlines()[-1] == "laptop1"
    assert f"DIRVISH_SRC={remote_tree}" in env

    lab.ssh("laptop1", f"echo changed > '{remote_tree}/sub dir/f7.txt'")
    bank.run("image", "lap", "--image", "two", check=0)
    tree2 = vault / "two" / "tree"
    assert parse_summary((vault / "two" / "summary").read_text()).reference == "one"
    for name in ("f1.txt", "f100.txt", "f200.txt"):
        assert (tree2 / "sub dir" / name).stat().st_ino == (tree1 / "sub dir" / name).stat().st_ino
    assert (tree2 / "sub dir" / "f7.txt").stat().st_ino != (tree1 / "sub dir" / "f7.txt").stat().st_ino
    assert (tree2 / "sub dir" / "f7.txt").read_text() == "changed\n"
