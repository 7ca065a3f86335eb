"""The plan of a new backup drive (prepare_drive): sizes, names, banks and refusals of bad choices."""

from __future__ import annotations

import subprocess

import pytest

from dervish_engine.drive_layout import MIB, DriveLayoutError, parse_size, partition_name, plan_drive

GIB = 1024 * MIB
ARGS = dict(rescue_size="1GiB", filesystem="ext4", fs_label="BACKUPDRIVE", fs_uuid="", disklabel="backup-2",
            banks=["/backup/dervish", "/backup/more/bank"], mount_point="/backup", rescue_image="/r.img.zst")


def test_sizes():
    assert parse_size("1GiB", "v") == GIB and parse_size(64, "v") == 64 * MIB and parse_size("32M", "v") == 32 * MIB
    for bad in ("0", "1.5G", "-1", "1KiB", "", "lots"):
        with pytest.raises(DriveLayoutError, match="^v: .* is not a size"):
            parse_size(bad, "v")


def test_partition_names():
    assert partition_name("/dev/sdb", 2) == "/dev/sdb2"
    assert partition_name("/dev/loop3", 1) == "/dev/loop3p1"
    assert partition_name("/dev/nvme0n1", 3) == "/dev/nvme0n1p3"


def test_plan_and_sfdisk_script_is_what_sfdisk_reads(tmp_path):
    layout = plan_drive("/dev/sdc", 8 * GIB, **ARGS)
    assert layout.banks == ["dervish", "more/bank"]
    assert len(layout.steps) == 5 and "/dev/sdc2 rescue 1024 MiB" in layout.steps[0]
    assert "LABEL=BACKUPDRIVE" in layout.steps[3] and "DISKLABEL backup-2" in layout.steps[4]
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"")
    subprocess.run(["truncate", "-s", str(layout.disk_bytes), str(disk)], check=True)
    subprocess.run(["sfdisk", "-q", str(disk)], input=layout.sfdisk_script(), text=True, check=True)
    dump = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
    parts = [line for line in dump.splitlines() if line.startswith(str(disk))]
    assert len(parts) == 3 and "size=        2048" in parts[0] and f"size={2 * 1024 * 1024:>12}" in parts[1]
    assert 'name="backup"' in parts[2]


@pytest.mark.parametrize("change, message", [
    (dict(filesystem="xfs"), "dervish_prepare_drive_filesystem: 'xfs' is not supported"),
    (dict(disklabel="backup 2"), "dervish_prepare_drive_label: 'backup 2' is not a drive name"),
    (dict(disklabel=""), "dervish_prepare_drive_label"),
    (dict(fs_label="", fs_uuid=""), "neither label nor uuid"),
    (dict(banks=["/srv/bank"]), "bank /srv/bank is not below the drive's mount point /backup"),
    (dict(banks=["/backup"]), "bank /backup is not below"),
    (dict(rescue_size="1x"), "dervish_prepare_drive_rescue_size"),
])
def test_bad_choices_are_one_line_naming_the_variable(change, message):
    with pytest.raises(DriveLayoutError, match=message):
        plan_drive("/dev/sdc", 8 * GIB, **{**ARGS, **change})


def test_rescue_image_must_fit():
    with pytest.raises(DriveLayoutError, match="holds 2048 MiB, more than the rescue partition's 1024 MiB"):
        plan_drive("/dev/sdc", 8 * GIB, **ARGS, rescue_image_bytes=2 * GIB)
    assert plan_drive("/dev/sdc", 8 * GIB, **ARGS, rescue_image_bytes=GIB).needed_bytes == 3 * MIB + GIB + 64 * MIB
