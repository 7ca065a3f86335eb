"""laptop1 has a real disk (issue 8): a loop device with a gpt table and ext4 filesystems that only
laptop1 sees, attached by ``labctl up`` and detached, by name, by ``labctl down``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab import Lab


def test_laptop1_has_a_partitioned_disk_with_filesystems(lab: Lab) -> None:
    loop = lab.disk("laptop1")
    assert loop and lab.disk("laptop2") is None and lab.disk(lab.server) is None
    back = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", loop], text=True, capture_output=True,
                          check=True).stdout.strip()
    assert back == str(lab.dir / "laptop1-disk.img")
    dump = lab.ssh("laptop1", f"sfdisk --dump {loop}").stdout
    assert "label: gpt" in dump and dump.count(f"{loop}p") == 3
    probe = lab.ssh("laptop1", f"blkid -c /dev/null -o export {loop}p2 {loop}p3").stdout
    assert "LABEL=laptop1-root" in probe and "LABEL=laptop1-home" in probe and probe.count("TYPE=ext4") == 2
    for host in ("laptop2", lab.server):  # nobody else sees it
        assert lab.ssh(host, f"test -e {loop}", check=False).returncode == 1, host


def test_stop_start_keeps_the_disk_and_its_filesystems(lab: Lab) -> None:
    loop = lab.disk("laptop1")
    uuid = lab.ssh("laptop1", f"blkid -c /dev/null -o value -s UUID {loop}p2").stdout.strip()
    lab.labctl("stop", "laptop1")
    lab.labctl("start", "laptop1")
    assert lab.disk("laptop1") == loop
    assert lab.ssh("laptop1", f"blkid -c /dev/null -o value -s UUID {loop}p2").stdout.strip() == uuid


@pytest.mark.slow
def test_down_detaches_exactly_what_it_attached_and_up_attaches_again(lab: Lab) -> None:
    """Last in this file: the session's lab goes down and comes back fresh (only one lab net is ours)."""
    disk, drive = lab.disk("laptop1"), (lab.dir / "drive.loop").read_text().strip()
    images = [str(lab.dir / "laptop1-disk.img"), str(lab.dir / "drive.img")]
    result = lab.labctl("down")
    try:
        assert f"laptop1    {disk} detached" in result.stdout and f"drive      {drive} detached" in result.stdout
        losetup = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], text=True, capture_output=True,
                                 check=False).stdout
        assert not any(image in losetup for image in images) and not Path(f"{disk}p1").exists()
        assert lab.labctl("down").returncode == 0  # safe to run twice
    finally:
        lab.up()
    assert lab.disk("laptop1") and lab.ssh("laptop1", f"test -b {lab.disk('laptop1')}p3").returncode == 0
