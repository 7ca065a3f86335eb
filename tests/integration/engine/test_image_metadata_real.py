"""Restore metadata in real images: a lab client over real ssh runs the real collector, and a local vault
whose metadata command fails still gets a good image."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from dervish_engine import rsync
from dervish_engine.summary import parse_summary

REPO = Path(__file__).resolve().parents[3]
COLLECTOR = REPO / "plugins" / "module_utils" / "dervish_metadata.py"
SRC = "/srv/dervish-metadata-test"
# in the lab host's own /root (its /usr is the machine's): the program as the role deploys it
PROGRAM = "/root/dervish-metadata-test"


def summary_of(image: Path):
    return parse_summary((image / "summary").read_text(encoding="utf-8", errors="surrogateescape"))


@pytest.fixture
def remote_client(lab):
    lab.ssh("laptop1", f"rm -rf {SRC} && mkdir -p {SRC} && echo hello > {SRC}/file")
    lab.ssh("laptop1", f"install -m 700 /dev/stdin {PROGRAM}",
            input="#!/usr/bin/python3\n" + COLLECTOR.read_text())
    yield "laptop1"
    lab.ssh("laptop1", f"rm -rf {SRC} {PROGRAM}", check=False)


@pytest.mark.lab
@pytest.mark.slow
def test_remote_image_carries_the_clients_metadata(lab, bank, remote_client):
    rsh = f"ssh -F {lab.ssh_config}"
    vault = bank.vault("lap", SRC, f"rsh: {rsh}\nmetadata: {PROGRAM} --json\n", client=remote_client)
    run = bank.run("image", "lap", "--image", "one")
    assert run.returncode == 0, run.stderr
    image = vault / "one"
    s = summary_of(image)
    assert s.status == "success" and s.has_metadata, s.metadata
    # the lab's private /dev has no disk nodes, so the partition tables fail there: a warning, not a failure
    failed = [name for name, item in json.loads((image / "metadata" / "metadata.json").read_text())["items"].items()
              if item["status"] == "failed"]
    assert s.metadata == ("ok" + (f" (items failed: {', '.join(sorted(failed))})" if failed else ""))
    if failed:
        assert "warning: metadata of image one lacks the items" in run.stderr
    meta = image / "metadata"
    assert (meta / "hostname").read_text().strip() == lab.ssh("laptop1", "cat /proc/sys/kernel/hostname").stdout.strip()
    lsblk = json.loads((meta / "lsblk.json").read_text())
    assert "blockdevices" in lsblk
    data = json.loads((meta / "metadata.json").read_text())
    assert data["format"] == 1 and data["items"]["hostname"]["data"] == "laptop1"
    assert stat.S_IMODE(meta.stat().st_mode) == 0o700 and stat.S_IMODE((meta / "hostname").stat().st_mode) == 0o600
    assert (image / "tree" / "file").read_text() == "hello\n"
    assert sorted(p.name for p in image.iterdir()) == ["index.gz", "log.gz", "metadata", "summary", "tree"]
    # the command ran through the same bounded rsh as rsync
    assert shlex.join(["-e", rsync.bounded_rsh(rsh, 600)]) in s.action
    status = json.loads(bank.run("status", "--json", check=0).stdout)
    assert [v["metadata"] for v in status["vaults"] if v["vault"] == "lap"] == [True]


@pytest.mark.lab
@pytest.mark.slow
def test_remote_metadata_refused_leaves_a_good_image(lab, bank, remote_client):
    rsh = f"ssh -F {lab.ssh_config}"
    vault = bank.vault("lap2", SRC, f"rsh: {rsh}\nmetadata: /root/no-such-dervish-metadata --json\n",
                       client=remote_client)
    run = bank.run("image", "lap2", "--image", "one")
    assert run.returncode == 4, run.stderr  # good image, but without its metadata
    s = summary_of(vault / "one")
    assert s.status == "success" and s.metadata.startswith("failed (/root/no-such-dervish-metadata exited 127")
    assert not (vault / "one" / "metadata").exists()
    assert "metadata failed" in run.stderr


def test_failing_local_metadata_command_leaves_a_good_image(bank, small_tree):
    vault = bank.vault("loc", small_tree, "metadata: sh -c 'echo refused >&2; exit 3'\n")
    run = bank.run("image", "loc", "--image", "one")
    assert run.returncode == 4, run.stderr
    image = vault / "one"
    s = summary_of(image)
    assert s.status == "success" and s.metadata == "failed (sh exited 3: refused)" and not s.has_metadata
    assert "loc:default image one: metadata failed (sh exited 3: refused): the image has no metadata/" in run.stderr
    assert not (image / "metadata").exists() and (image / "tree").is_dir()
    hist = (vault / "dirvish" / "default.hist").read_text()
    assert "one" in hist  # a good image: recorded, and the reference of the next one
    status = json.loads(bank.run("status", "--json", check=0).stdout)
    assert status["vaults"][0]["metadata"] is False
    log = subprocess.run(["zcat", str(image / "log.gz")], capture_output=True, text=True, check=True).stdout
    assert "refused" in log and "Metadata: failed (sh exited 3: refused)" in log


def test_local_metadata_and_vault_without_it(bank, small_tree, tmp_path):
    doc = {"format": 1, "collected_at": "now", "disks": [], "boot": {},
           "items": {"hostname": {"status": "ok", "output": "here\n"}}}
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    vault = bank.vault("loc", small_tree, f"metadata: cat {tmp_path / 'doc.json'}\n")
    bank.run("image", "loc", "--image", "one", check=0)
    assert summary_of(vault / "one").metadata == "ok"
    assert (vault / "one" / "metadata" / "hostname").read_text() == "here\n"
    plain = bank.vault("plain", small_tree)
    bank.run("image", "plain", "--image", "one", check=0)
    assert summary_of(plain / "one").metadata == "none" and not (plain / "one" / "metadata").exists()
