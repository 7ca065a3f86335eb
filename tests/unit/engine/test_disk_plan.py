"""disk_plan: the DiskPlan from an image's restore metadata (pure)."""

from __future__ import annotations

import copy

import pytest

from dervish_engine import disk_plan
from dervish_engine.disk_plan import PlanError, VaultSource, build_plan

DUMP = """label: dos
label-id: 0x1234abcd
device: /dev/sda
unit: sectors
sector-size: 512

/dev/sda1 : start=        2048, size=       32768, type=83, bootable
/dev/sda2 : start=       34816, size=       81920, type=83
/dev/sda3 : start=      116736, size=       16384, type=82
/dev/sda4 : start=      133120, size=       63488, type=83
"""
BLKID = {
    "/dev/sda1": {"UUID": "b0b0", "TYPE": "ext2", "LABEL": "boot"},
    "/dev/sda2": {"UUID": "r00t", "TYPE": "ext4", "LABEL": "root"},
    "/dev/sda3": {"UUID": "5wap", "TYPE": "swap", "LABEL": "swap"},
    "/dev/sda4": {"UUID": "da7a", "TYPE": "ext4"},
}
FSTAB = [
    {"spec": "UUID=r00t", "file": "/", "vfstype": "ext4", "mntopts": "defaults"},
    {"spec": "LABEL=boot", "file": "/boot", "vfstype": "ext2", "mntopts": "defaults"},
    {"spec": "UUID=5wap", "file": "none", "vfstype": "swap", "mntopts": "sw"},
    {"spec": "/dev/sda4", "file": "/srv/data/", "vfstype": "ext4", "mntopts": "defaults"},
    {"spec": "tmpfs", "file": "/var/tmp", "vfstype": "tmpfs", "mntopts": "defaults"},
    {"spec": "server:/x", "file": "/net/x", "vfstype": "nfs", "mntopts": "defaults"},
]
META = {
    "format": 1, "disks": ["sda"], "boot": {"firmware": "bios", "grub_install_devices": ["/dev/sda"], "efi": None},
    "items": {
        "sfdisk/sda": {"status": "ok", "output": DUMP},
        "blkid": {"status": "ok", "output": "", "data": BLKID},
        "fstab": {"status": "ok", "output": "# fstab\n", "data": FSTAB},
        "mounts": {"status": "ok", "output": "", "data": [
            {"spec": "x", "file": "/spare"},
            {"spec": "usb", "file": "/media/usb"},
            {"spec": "devpts", "file": "/dev/pts"}]},
        "lsblk": {"status": "ok", "output": "",
                  "data": {"blockdevices": [{"kname": "sda", "size": 100 * 1024 * 1024}]}},
    },
}
VAULTS = [VaultSource("root", "/", "/bank/root/img/tree", ("/spare/", "*.tmp", "/home/x")),
          VaultSource("home", "/home", "/bank/home/img/tree"),
          VaultSource("data", "/srv/data", "/bank/data/img/tree"),
          VaultSource("nfs", "/net/x", "/bank/nfs/img/tree")]


def plan(meta=None, vaults=None, **kw):
    return build_plan(META if meta is None else meta, VAULTS if vaults is None else vaults, image="root/img", **kw)


def test_partitions_carry_the_saved_types_uuids_labels_and_mount_points():
    p = plan()
    assert p.disk == "sda" and p.label == "dos" and p.disk_bytes == 100 * 1024 * 1024 and p.target_dump == DUMP
    got = [(x.number, x.start, x.size, x.type, x.fstype, x.uuid, x.label, x.mount_point, x.swap) for x in p.partitions]
    assert got == [(1, 2048, 32768, "83", "ext2", "b0b0", "boot", "/boot", False),
                   (2, 34816, 81920, "83", "ext4", "r00t", "root", "/", False),
                   (3, 116736, 16384, "82", "swap", "5wap", "swap", None, True),
                   (4, 133120, 63488, "83", "ext4", "da7a", None, "/srv/data", False)]
    assert [x.mount_point for x in p.filesystems()] == ["/", "/boot", "/srv/data"]


def test_each_vault_goes_into_the_filesystem_of_its_longest_mount_point_prefix():
    got = {(x.vault, x.partition, x.mount_point, x.subdir) for x in plan().placements}
    # /home lies on the root filesystem; /net/x is a network filesystem, not on this disk
    assert got == {("root", 2, "/", ""), ("home", 2, "/", "home"), ("data", 4, "/srv/data", "")}


def test_left_out_dirs_are_the_kernel_dirs_tmp_other_mount_points_and_excluded_mount_points():
    # not what was mounted only then (/media/usb), nor what the running system mounts below /dev
    assert dict(plan().left_out) == {"/proc": 0o755, "/sys": 0o755, "/dev": 0o755, "/run": 0o755, "/tmp": 0o1777,
                                     "/var/tmp": 0o1777, "/net/x": 0o755, "/spare": 0o755}


def test_boot_loader_follows_the_metadata_unless_told():
    assert plan().boot_loader == "bios"
    meta = copy.deepcopy(META)
    meta["boot"]["grub_install_devices"] = []
    assert plan(meta).boot_loader == "none"
    assert plan(meta, boot_loader="bios").boot_loader == "bios"
    meta["boot"]["firmware"] = "efi"
    with pytest.raises(PlanError, match=r"^root/img: EFI boot needs a vfat partition mounted on /boot/efi"):
        plan(meta)


def test_growing_drops_the_last_size_and_needs_only_the_last_start():
    p = plan(grow_last_partition=True)
    assert "/dev/sda4 : start=      133120, type=83" in p.target_dump and "size=       63488" not in p.target_dump
    assert p.disk_bytes == (133120 + 1) * 512


@pytest.mark.parametrize("item, message", [
    ("blkid", r"^root/img: metadata item blkid is missing; a rebuild needs it$"),
    ("fstab", r"^root/img: metadata item fstab is missing; a rebuild needs it$"),
    ("sfdisk/sda", r"^root/img: no saved partition table \(no sfdisk item with status ok\)$"),
])
def test_missing_items_are_named(item, message):
    meta = copy.deepcopy(META)
    del meta["items"][item]
    with pytest.raises(PlanError, match=message):
        plan(meta)


def test_odd_items_are_named():
    meta = copy.deepcopy(META)
    meta["items"]["blkid"]["data"]["/dev/sda4"]["TYPE"] = "zfs_member"
    with pytest.raises(PlanError, match=r"^root/img: partition /dev/sda4 has filesystem zfs_member, which"):
        plan(meta)
    with pytest.raises(PlanError, match=r"^root/img: no saved partition table of disk sdb \(saved: sda\)$"):
        plan(disk="sdb")
    with pytest.raises(PlanError, match=r"no vault's tree lies on a filesystem of disk sda"):
        plan(vaults=[VAULTS[3]])


def test_load_metadata_names_the_image_without_metadata(tmp_path):
    with pytest.raises(PlanError, match=r"no metadata.json: this image has no restore metadata"):
        disk_plan.load_metadata(str(tmp_path))
