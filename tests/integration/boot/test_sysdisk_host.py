"""Issue 9's boot proof, part 2: a lab client that runs from a bootable system disk (labctl's
LAB_SYSDISK_HOSTS), provisioned by site.yml and backed up for real, with its restore metadata; then
rebuilt by bare_metal_restore.yml onto a blank disk of the backup server, which boots under qemu.

vm1 joins this file's lab with its own copy of lab/bootdisk.sh's image: its root is that disk's root
partition (not the overlay the other hosts run on), /boot and /data are mounted as the disk's fstab says,
and sshd and python3 are the disk's. Its private /dev holds only that disk's nodes, so
dervish-metadata there reports that disk and nothing of the machine's.
"""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from qemu import boot_disk, boot_marker
from sysdisk import HOST, VAULTS, sysdisk_inventory, sysdisk_lab

from lab import Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
BANK = "/backup/dervish"


@contextmanager
def drive_mounted(vm: Lab):
    """The server's backup drive mounted by hand at /backup while the block runs."""
    vm.ssh(vm.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        yield
    finally:
        vm.ssh(vm.server, "umount /backup")


@pytest.fixture(scope="module")
def vm(lab: Lab, tmp_path_factory) -> Lab:
    return sysdisk_lab(lab)


@pytest.fixture(scope="module")
def backed_up(vm: Lab, tmp_path_factory):
    """vm1 provisioned by site.yml and backed up by backup.yml; yields (inventory, images by vault)."""
    inventory = sysdisk_inventory(tmp_path_factory.mktemp("sysdisk"))
    # every client: the server pins the host keys of all of them on its first run
    site = run_playbook(vm, "site.yml", inventory=inventory)
    assert site.rc == 0, site.stdout[-6000:]
    with drive_mounted(vm):
        free = int(vm.ssh(vm.server, "df --output=avail -B1M /backup | tail -1").stdout)
    used = int(vm.ssh(HOST, "df --output=used -B1M / /boot /data | tail -n +2").stdout.split()[0]) + 64
    assert free > used, (f"the lab's backup drive has {free} MiB free and {HOST} needs about {used} MiB: "
                         "start this lab with LAB_DRIVE_SIZE=2G (labctl down first)")
    backup = run_playbook(vm, "backup.yml", inventory=inventory, limit=HOST)
    assert backup.rc == 0, backup.stdout[-6000:]
    with drive_mounted(vm):
        newest = {vault: vm.ssh(vm.server, f"cd {BANK}/{vault} && ls -d */summary | tail -1").stdout.split("/")[0]
                  for vault in VAULTS}
    return inventory, newest


def test_vm1_runs_from_its_system_disk(vm: Lab) -> None:
    loop = (vm.dir / f"{HOST}-sysdisk.loop").read_text().strip()
    back = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", loop], text=True, capture_output=True,
                          check=True).stdout.strip()
    assert back == str(vm.dir / f"{HOST}-sysdisk.img")
    mounts = vm.ssh(HOST, "for m in / /boot /data; do findmnt -n -o TARGET,SOURCE $m; done").stdout.split()
    assert mounts == ["/", f"{loop}p2", "/boot", f"{loop}p1", "/data", f"{loop}p4"], mounts
    fstab = vm.ssh(HOST, "cat /etc/fstab").stdout
    for target, part in (("/", 2), ("/boot", 1), ("/data", 4)):  # mounted as its fstab says, by UUID
        uuid = vm.ssh(HOST, f"blkid -c /dev/null -s UUID -o value {loop}p{part}").stdout.strip()
        assert re.search(rf"^UUID={uuid}\s+{re.escape(target)}\s", fstab, re.M), (target, fstab)
    assert vm.ssh(HOST, "cat /etc/hostname").stdout.strip() == HOST
    assert vm.ssh(HOST, "python3 -c 'import apt, sys; print(sys.version_info[:2])'").stdout.strip() == "(3, 11)"
    # its /dev holds this disk's nodes and no other disk
    nodes = sorted(vm.ssh(HOST, "find /dev -maxdepth 1 -type b -printf '%p\\n'").stdout.split())
    assert nodes == [loop, *(f"{loop}p{n}" for n in range(1, 5))], nodes
    # sshd is the disk's: its binary is on the root partition, not the machine's overlay
    sshd = vm.ssh(HOST, "stat -L -c %d /proc/$(pgrep -o -x sshd)/exe; stat -c %d /").stdout.split()
    assert sshd[0] == sshd[1], sshd


def test_vm1_is_backed_up_with_metadata_of_its_disk(vm: Lab, backed_up) -> None:
    with drive_mounted(vm):
        check_images_of_vm1(vm, backed_up[1])


def check_images_of_vm1(vm: Lab, newest: dict[str, str]) -> None:
    loop = (vm.dir / f"{HOST}-sysdisk.loop").read_text().strip()
    for vault in VAULTS:
        where = f"{BANK}/{vault}/{newest[vault]}"
        summary = vm.ssh(vm.server, f"cat {where}/summary").stdout
        assert "Status: success" in summary and "Metadata: ok" in summary, (vault, summary)
    root = f"{BANK}/vm1-root/{newest['vm1-root']}"
    assert vm.ssh(vm.server, f"test -x {root}/tree/usr/sbin/sshd && test -f {root}/tree/etc/fstab").returncode == 0
    data = f"{BANK}/vm1-data/{newest['vm1-data']}"
    assert "data partition" in vm.ssh(vm.server, f"cat {data}/tree/README").stdout
    collected = json.loads(vm.ssh(vm.server, f"cat {root}/metadata/metadata.json").stdout)
    disk = Path(loop).name
    assert disk in collected["disks"], collected["disks"]
    dump = vm.ssh(vm.server, f"cat {root}/metadata/sfdisk/{disk}.dump").stdout
    assert "label: dos" in dump and dump.count(f"{loop}p") == 4, dump
    blkid = vm.ssh(vm.server, f"cat {root}/metadata/blkid.txt").stdout
    for label in ("sysboot", "sysroot", "sysswap", "sysdata"):
        assert f'LABEL="{label}"' in blkid, blkid
    assert vm.ssh(vm.server, f"cat {root}/metadata/fstab").stdout == vm.ssh(HOST, "cat /etc/fstab").stdout


@pytest.fixture()
def blank_disk(vm: Lab):
    """A blank disk of vm1's disk's size attached to the server; yields (its device there, its image file)."""
    name = "vm1-rebuilt"
    vm.labctl("disk-detach", name, check=False)  # left over by an interrupted run
    size = (vm.dir / f"{HOST}-sysdisk.img").stat().st_size
    device = vm.labctl("disk-attach", vm.server, name, str(size)).stdout.strip().splitlines()[-1]
    try:
        yield device, vm.dir / f"extra-{name}.img"
    finally:
        vm.labctl("disk-detach", name)


def test_vm1_rebuilt_onto_a_blank_disk_boots(vm: Lab, backed_up, blank_disk) -> None:
    """The whole way back: vm1's images (/, /boot, /data) and their metadata rebuild a blank disk on the
    server (table, filesystems with the saved UUIDs, swap, trees, GRUB), and that disk boots by itself to
    the marker, which only prints once /, /data and swap are up: the fstab's UUIDs matched."""
    inventory, _newest = backed_up
    device, image = blank_disk
    run = run_playbook(vm, "bare_metal_restore.yml", inventory=inventory, extravars={
        "dervish_bare_metal_client": HOST, "dervish_bare_metal_device": device,
        "dervish_bare_metal_confirm": device})
    assert run.rc == 0, run.stdout[-6000:]
    uuids = {target: vm.ssh(HOST, f"findmnt -n -o UUID {target}").stdout.strip() for target in ("/", "/data")}
    # the server's node of the disk is the machine's loop device: what was written through it reaches the file
    subprocess.run(["blockdev", "--flushbufs", device], check=True)
    boot = boot_disk(image, boot_marker(), timeout=900, snapshot=True)
    assert boot, f"no boot marker within {boot.seconds:.0f} s; console:\n{boot.console[-4000:]}"
    assert f"root={uuids['/']} data={uuids['/data']}" in boot.marker_line, (boot.marker_line, uuids)
