"""A disk that lsblk lists (sysfs is the machine's) but whose device node this system does not have
(a container, a lab host) is not this system's to rebuild: its sfdisk item is ``skipped: not present``,
not a failure that would mark every image's metadata forever. Recorded real output of a lab client."""

from __future__ import annotations

import json
import subprocess

from ansible_collections.dervish.backup.plugins.module_utils import dervish_metadata as md

LSBLK = {"blockdevices": [
    {"name": "vda", "kname": "vda", "path": "/dev/vda", "type": "disk", "size": 21474836480, "children": [
        {"name": "vda1", "kname": "vda1", "path": "/dev/vda1", "type": "part", "size": 21473787904}]},
    {"name": "loop1", "kname": "loop1", "path": "/dev/loop1", "type": "loop", "size": 67108864, "children": [
        {"name": "loop1p1", "kname": "loop1p1", "path": "/dev/loop1p1", "type": "part", "size": 1048576}]},
]}


def runner(argv, **kwargs):
    name = argv[0].rsplit("/", 1)[-1]
    if name == "lsblk":
        return subprocess.CompletedProcess(argv, 0, json.dumps(LSBLK), "")
    if argv[1:] == ["--dump", "/dev/vda"]:
        return subprocess.CompletedProcess(argv, 1, "", "sfdisk: cannot open /dev/vda: No such file or directory\n")
    if argv[1:] == ["--dump", "/dev/loop1"]:
        return subprocess.CompletedProcess(argv, 0, "label: gpt\n", "")
    if argv[1:] == ["--dump", "/dev/loop2"]:
        return subprocess.CompletedProcess(argv, 1, "", "sfdisk: cannot open /dev/loop2: Permission denied\n")
    return subprocess.CompletedProcess(argv, 0, "", "")


def test_a_disk_without_a_device_node_is_not_present(tmp_path):
    col = md.collect(runner=runner, which=lambda name: f"/usr/sbin/{name}", root=str(tmp_path))
    assert col.disks == ["vda", "loop1"]
    vda = col.items["sfdisk/vda"]
    assert vda.status == md.NOT_PRESENT and "No such file or directory" in vda.stderr
    assert col.items["sfdisk/loop1"].status == md.OK
    assert "sfdisk/vda" not in col.failed


def test_a_disk_that_cannot_be_opened_otherwise_still_fails(tmp_path):
    loop2 = {"name": "loop2", "type": "loop", "size": 1 << 20,
             "children": [{"name": "loop2p1", "type": "part", "size": 1}]}
    tree = {"blockdevices": [*LSBLK["blockdevices"], loop2]}

    def other(argv, **kwargs):
        if argv[0].endswith("lsblk"):
            return subprocess.CompletedProcess(argv, 0, json.dumps(tree), "")
        return runner(argv, **kwargs)

    col = md.collect(runner=other, which=lambda name: f"/usr/sbin/{name}", root=str(tmp_path))
    assert col.items["sfdisk/loop2"].status == md.FAILED and "sfdisk/loop2" in col.failed
