"""Debian's real Dirvish 1.2.1 on a bank whose vault sets ``metadata:`` and whose images carry ``metadata/``
and a ``Metadata:`` summary line: dirvish images it (ignoring the key), links to dervish's image, and
dirvish-locate and dirvish-expire read the bank. See test_dirvish_interop.py for how Dirvish is run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import test_dirvish_interop as interop
from test_dirvish_interop import dirvish, images

from dervish_engine.summary import parse_summary

pytestmark = interop.pytestmark  # same skip conditions
shared = interop.shared  # the fixture: a bank both dervish and Dirvish read

DOC = {"format": 1, "collected_at": "now", "disks": ["sda"], "boot": {"firmware": "bios"},
       "items": {"hostname": {"status": "ok", "output": "client\n"},
                 "sfdisk/sda": {"status": "ok", "output": "label: gpt\n"}}}


def test_dirvish_tools_accept_a_bank_with_metadata(shared, small_tree, tmp_path):
    (tmp_path / "doc.json").write_text(json.dumps(DOC))
    vault = shared.vault("v", small_tree, f"metadata: cat {tmp_path / 'doc.json'}\nsummary: long\n")
    shared.run("image", "v", "--image", "old", "--image-time", "2020-01-01 00:00", "--expire", "+1 day", check=0)
    shared.run("image", "v", "--image", "m1", check=0)
    s = parse_summary((vault / "m1" / "summary").read_text())
    assert s.metadata == "ok" and s.extra["metadata"] == f"cat {tmp_path / 'doc.json'}"
    assert (vault / "m1" / "metadata" / "sfdisk" / "sda.dump").read_text() == "label: gpt\n"

    # real Dirvish reads the vault config with metadata: and continues after dervish's image
    time.sleep(1.1)
    dirvish(shared, "/usr/sbin/dirvish", "--vault", "v")
    [theirs] = [name for name in images(vault) if name not in ("old", "m1")]
    ts = parse_summary((vault / theirs / "summary").read_text())
    assert ts.reference == "m1" and ts.status == "success" and ts.metadata is None
    rel = Path("d00") / "s0" / "f00000.dat"
    assert (vault / theirs / "tree" / rel).stat().st_ino == (vault / "m1" / "tree" / rel).stat().st_ino
    assert not (vault / theirs / "metadata").exists()

    ours = shared.run("locate", "v", "f0000[01].dat$", check=0).stdout
    located = dirvish(shared, "dirvish-locate", "v", "f0000[01].dat$").stdout
    assert located == ours and "matches in 3 images" in located.splitlines()[0]

    out = dirvish(shared, "dirvish-expire", "--no-run").stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("v:default")]
    assert [row[1] for row in rows] == ["old"]

    # and dervish after Dirvish: a metadata image again, status says so
    shared.run("image", "v", "--image", "m2", check=0)
    assert parse_summary((vault / "m2" / "summary").read_text()).reference == theirs
    status = json.loads(shared.run("status", "--json", check=0).stdout)
    assert status["vaults"][0]["last_good"] == "m2" and status["vaults"][0]["metadata"] is True
