"""Module tests for dervish.backup.host_metadata: a real collection on this machine, and the dest layout's
check mode / changed / diff with a fixed collection (a live machine's df and mounts change between runs)."""

from __future__ import annotations

import json
import socket
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.module_utils import dervish_metadata as md
from ansible_collections.dervish.backup.plugins.modules import host_metadata as mod


def run_module(capsys, check=False, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=True)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def fixed(monkeypatch):
    state = {"uname": "Linux fileserver 6.1.0 x86_64\n"}

    def fake_collect():
        col = md.Collection(collected_at=f"2026-12-03T11:{len(state):02d}:00+0000", disks=["sda"],
                            boot={"firmware": "bios", "grub_install_devices": ["/dev/sda"], "efi": None})
        col.add(md.Item(name="sfdisk/sda", status=md.OK, command=["sfdisk", "--dump", "/dev/sda"], rc=0,
                        output="label: dos\nlabel-id: 0x1a2b3c4d\ndevice: /dev/sda\nunit: sectors\n\n"
                               "/dev/sda1 : start=2048, size=204800, type=83, bootable\n"))
        col.add(md.Item(name="uname", status=md.OK, command=["uname", "-a"], rc=0, output=state["uname"]))
        col.add(md.Item(name="mdadm", status=md.TOOL_MISSING, command=["mdadm", "--detail", "--scan", "--verbose"]))
        state["calls"] = state.get("calls", 0) + 1
        return col

    monkeypatch.setattr(mod, "collect", fake_collect)
    return state


def test_real_collection_on_this_host(capsys):
    result = run_module(capsys)
    assert result["changed"] is False and "files" not in result
    items = result["metadata"]["items"]
    assert items["hostname"]["data"] == socket.gethostname()
    assert items["lsblk"]["status"] == md.OK and items["uname"]["status"] == md.OK
    assert result["boot"]["firmware"] in ("bios", "efi")
    assert all(item["status"] in (md.OK, md.FAILED, md.TOOL_MISSING, md.NOT_PRESENT) for item in items.values())
    assert set(result["failed_items"]) == {n for n, i in items.items() if i["status"] == md.FAILED}


def test_dest_check_mode_then_write_then_unchanged(capsys, tmp_path, fixed):
    dest = tmp_path / "meta"
    result = run_module(capsys, check=True, dest=str(dest))
    assert result["changed"] is True and not dest.exists()
    assert result["files"] == ["boot.json", "metadata.json", "sfdisk/sda.dump", "uname.txt"]
    assert f"added {dest}/sfdisk/sda.dump\n" in result["diff"]["prepared"]

    result = run_module(capsys, dest=str(dest))
    assert result["changed"] is True and result["dest"] == str(dest)
    assert (dest / "sfdisk" / "sda.dump").read_text().startswith("label: dos\n")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700

    # only collected_at differs: no change, nothing rewritten
    before = (dest / "metadata.json").read_text()
    result = run_module(capsys, dest=str(dest))
    assert result["changed"] is False and result["files"] == [] and "diff" not in result
    assert (dest / "metadata.json").read_text() == before

    fixed["uname"] = "Linux fileserver 6.1.0-14 x86_64\n"
    result = run_module(capsys, check=True, dest=str(dest))
    assert result["changed"] is True and result["files"] == ["metadata.json", "uname.txt"]
    assert f"changed {dest}/uname.txt\n" in result["diff"]["prepared"]
    assert (dest / "metadata.json").read_text() == before  # check mode wrote nothing


def test_dest_errors_are_one_line(capsys, tmp_path, fixed):
    (tmp_path / "afile").write_text("x")
    result = run_module(capsys, dest=str(tmp_path / "afile"))
    assert result["failed"] and result["msg"] == f"dest: {tmp_path}/afile exists and is not a directory"
    result = run_module(capsys, dest=str(tmp_path / "no" / "meta"))
    assert result["failed"] and result["msg"] == f"dest: parent directory {tmp_path}/no does not exist"


def test_failed_items_are_warnings(capsys, monkeypatch, fixed):
    inner = mod.collect

    def failing():
        col = inner()
        col.add(md.Item(name="blkid", status=md.FAILED, command=["blkid", "-c", "/dev/null"], rc=4,
                        stderr="blkid: error\n"))
        return col

    monkeypatch.setattr(mod, "collect", failing)
    result = run_module(capsys)
    assert not result.get("failed") and result["failed_items"] == ["blkid"]
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert "blkid: blkid -c /dev/null failed (rc 4): blkid: error" in warnings
