"""disk_guard: every refusal before a whole disk is overwritten, on real loop devices."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from dervish_engine import disk_guard
from dervish_engine.disk_guard import TargetRefused, check_target, read_server_facts

MiB = 1024 * 1024
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def disk(tmp_path):
    """A 32 MiB loop disk with two partitions (ext4 labelled g-one, and g-two); detached by name after."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as handle:
        handle.truncate(32 * MiB)
    subprocess.run(["sfdisk", "-q", str(img)], input="label: gpt\n,8MiB,L\n,,L\n", text=True, check=True,
                   capture_output=True)
    loop = run("losetup", "-f", "--show", str(img)).strip()
    try:
        subprocess.run(["partx", "-a", loop], capture_output=True, check=False)
        run("mkfs.ext4", "-q", "-F", "-L", "g-one", f"{loop}p1")
        run("mkfs.ext4", "-q", "-F", "-L", "g-two", f"{loop}p2")
        yield loop
    finally:
        subprocess.run(["umount", f"{loop}p1"], capture_output=True, check=False)
        subprocess.run(["partx", "-d", loop], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def digest(loop: str) -> str:
    with open(loop, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def refused(loop, confirm, needed=0, **facts_kw) -> str:
    before = digest(loop)
    facts = read_server_facts(**facts_kw)
    with pytest.raises(TargetRefused) as info:
        check_target(loop, confirm, needed, facts)
    assert digest(loop) == before
    message = str(info.value)
    assert "\n" not in message
    return message


@needs_root
def test_a_blank_unused_disk_with_the_exact_confirmation_passes(disk):
    target = check_target(disk, disk, 32 * MiB, read_server_facts())
    assert target.path == disk and target.size_bytes == 32 * MiB
    assert target.partitions == (f"{os.path.basename(disk)}p1", f"{os.path.basename(disk)}p2")


@needs_root
@pytest.mark.parametrize("confirm", [None, "", "yes", "/dev/loop", "/dev/sdb"])
def test_a_missing_or_wrong_confirmation_is_refused(disk, confirm):
    message = refused(disk, confirm)
    assert message.startswith("confirm is ") and repr(disk) in message and "exactly" in message


@needs_root
def test_the_confirmation_variable_is_named(disk):
    with pytest.raises(TargetRefused, match=r"^dervish_bare_metal_confirm is not set: it must be exactly"):
        check_target(disk, None, 0, read_server_facts(), confirm_variable="dervish_bare_metal_confirm")


@needs_root
def test_a_partition_is_not_a_whole_disk(disk):
    message = refused(f"{disk}p1", f"{disk}p1")
    assert message == (f"target {disk}p1 is a partition of {os.path.basename(disk)}, not a whole disk; "
                       f"name the disk ({disk})")


def test_a_non_block_device_or_missing_path_is_refused(tmp_path):
    with pytest.raises(TargetRefused, match=r"^target /dev/null is not a block device"):
        check_target("/dev/null", "/dev/null", 0, disk_guard.ServerFacts())
    with pytest.raises(TargetRefused, match=r"^target /dev/dervish-no-such-disk: No such file or directory"):
        check_target("/dev/dervish-no-such-disk", "/dev/dervish-no-such-disk", 0, disk_guard.ServerFacts())
    with pytest.raises(TargetRefused, match=r"is not a device path"):
        check_target(str(tmp_path), str(tmp_path), 0, disk_guard.ServerFacts())


@needs_root
def test_a_mounted_partition_is_refused(disk, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run("mount", f"{disk}p1", str(mnt))
    try:
        message = refused(disk, disk)
    finally:
        run("umount", str(mnt))
    assert message == (f"target {disk}: its partition {disk}p1 is mounted on {mnt}; unmount it (umount {mnt}) "
                       "or name another disk")


@needs_root
def test_the_disk_of_the_bank_is_the_backup_drive(disk, tmp_path):
    mnt = tmp_path / "drive"
    mnt.mkdir()
    run("mount", f"{disk}p2", str(mnt))
    try:
        message = refused(disk, disk, bank_paths=[str(mnt / "bank")])
    finally:
        run("umount", str(mnt))
    assert message.startswith(f"target {disk} is the backup drive (it holds the bank {mnt}/bank)")


@needs_root
def test_a_disk_with_the_drive_label_or_uuid_is_the_backup_drive(disk):
    assert "has its label g-two" in refused(disk, disk, drive_labels=["g-two"])
    uuid = run("blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", f"{disk}p1").strip()
    assert f"has its UUID {uuid}" in refused(disk, disk, drive_uuids=[uuid])


@needs_root
def test_the_disk_of_the_running_system_is_refused():
    root = next(m for m in reversed(read_server_facts().mounts) if m.mount_point == "/")
    disks = disk_guard.devno_to_disks(root.devno)
    if not disks or not os.path.exists(f"/dev/{disks[0]}"):
        pytest.skip("/ is not on a block device visible here")
    device = f"/dev/{disks[0]}"
    with pytest.raises(TargetRefused) as info:
        check_target(device, device, 0, read_server_facts())   # refused: nothing is ever written
    assert str(info.value) == (f"target {device} holds / of the running system (the server's own disk); "
                               "name the blank disk you attached")


@needs_root
def test_a_disk_holding_a_mounted_filesystem_through_device_mapper_is_refused(disk, tmp_path):
    name = f"dervish-guard-{os.getpid()}"
    sectors = int(run("blockdev", "--getsz", f"{disk}p2"))
    try:
        run("dmsetup", "create", name, "--table", f"0 {sectors} linear {disk}p2 0")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no device-mapper here: {exc.stderr.strip()}")
    try:
        message = refused(disk, disk)
        assert message.startswith(f"target {disk}: {disk}p2 is in use by dm-")
    finally:
        run("dmsetup", "remove", name)


@needs_root
def test_swap_in_use_is_refused(disk):
    # swapon would hand the partition to the whole machine's memory manager; the facts say it instead
    facts = read_server_facts()
    facts.swaps = [f"{disk}p2"]
    with pytest.raises(TargetRefused, match=rf"^target {disk}: {disk}p2 is swap in use; swapoff {disk}p2"):
        check_target(disk, disk, 0, facts)


def test_swaps_and_mountinfo_parse_escaped_names():
    assert disk_guard.parse_swaps("Filename Type Size Used Priority\n/dev/sdb2 partition 1 0 -2\n") == ["/dev/sdb2"]
    mounts = disk_guard.parse_mountinfo("36 35 8:3 / /mnt/with\\040space rw,relatime shared:1 - ext4 /dev/sda3 rw\n")
    assert mounts == [disk_guard.Mount("8:3", "/mnt/with space", "ext4", "/dev/sda3")]


@needs_root
def test_a_too_small_disk_is_refused(disk):
    message = refused(disk, disk, needed=64 * MiB)
    assert message == (f"target {disk} is too small: {32 * MiB} bytes (32.0 MiB), needed {64 * MiB} bytes "
                       "(64.0 MiB); attach a disk at least that large")
