"""The rescue image builder's pure parts: the rescue system's configuration, its size, its compression,
and that a build tree is never removed through a mount. The build itself (debootstrap, mkfs, a boot
under qemu) runs for real in tests/integration/site/test_prepare_drive.py."""

from __future__ import annotations

import subprocess

import pytest

from dervish_engine import rescue_build
from dervish_engine.drive_layout import MIB
from dervish_engine.drive_prepare import StepFailed
from dervish_engine.rescue_build import (
    READY_MARKER,
    RescueSource,
    build_rescue_image,
    compressor,
    configure,
    filesystem_bytes,
    mounts_below,
    remove_tree,
)

UUID = "0f0e0d0c-0b0a-4908-8706-050403020100"


def debootstrapped(tmp_path):
    root = tmp_path / "root"
    for d in ("etc/systemd/system", "usr/share/doc/bash", "usr/share/man/man1", "var/lib/apt/lists", "bin"):
        (root / d).mkdir(parents=True)
    (root / "usr/share/doc/bash/copyright").write_text("x")
    (root / "var/lib/apt/lists/lock").write_text("")
    (root / "bin/sh").write_text("#!")
    return root


def test_configured_rescue_system_mounts_its_root_by_uuid_and_reports_ready(tmp_path):
    root = debootstrapped(tmp_path)
    configure(str(root), UUID)
    assert (root / "etc/fstab").read_text().splitlines()[-1] == f"UUID={UUID} / ext4 errors=remount-ro 0 1"
    assert (root / "etc/hostname").read_text() == "dervish-rescue\n"
    assert (root / "etc/machine-id").read_text() == ""
    unit = (root / "etc/systemd/system/dervish-rescue-ready.service").read_text()
    assert READY_MARKER in unit and "$$(findmnt" in unit and "> /dev/console" in unit
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "dervish-rescue-ready.service").is_symlink()
    assert (wants / "systemd-networkd.service").is_symlink()
    assert "DHCP=yes" in (root / "etc/systemd/network/80-wired-dhcp.network").read_text()
    for getty in ("getty@tty1", "serial-getty@ttyS0"):
        conf = (root / f"etc/systemd/system/{getty}.service.d/autologin.conf").read_text()
        assert "ExecStart=\n" in conf and "--autologin root" in conf
    # documentation and package lists go; the system stays
    assert list((root / "usr/share/doc").iterdir()) == [] and list((root / "var/lib/apt/lists").iterdir()) == []
    assert (root / "bin/sh").exists()


def test_filesystem_has_room_for_the_tree_and_ext4():
    assert filesystem_bytes(100 * MIB) == (130 + 64) * MIB
    assert filesystem_bytes(1) % MIB == 0 and filesystem_bytes(1) >= 64 * MIB


@pytest.mark.parametrize("name, tool", [("r.img.zst", "zstd"), ("r.img.xz", "xz"), ("r.img.gz", "gzip"),
                                        ("r.img", "cat")])
def test_image_is_compressed_by_its_suffix(name, tool):
    assert compressor(f"/var/lib/dervish/{name}")[0] == tool


def test_source_says_what_is_built():
    assert RescueSource().describe() == "debootstrap bookworm from http://deb.debian.org/debian"
    assert "with mdadm" in RescueSource(extra_packages=("mdadm",)).describe()


def test_missing_tool_fails_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    log = []
    with pytest.raises(StepFailed, match="needs debootstrap"):
        build_rescue_image(str(tmp_path / "out" / "rescue.img.zst"), RescueSource(), 1024 * MIB, log)
    assert not (tmp_path / "out").exists() and log == []


def test_build_tree_is_not_removed_through_a_mount(tmp_path):
    """A killed debootstrap can leave the chroot's /proc mounted: removal unmounts it first (here a tmpfs
    with a file in it stands for it), and the file behind the mount is never touched."""
    work = tmp_path / "work"
    proc = work / "root" / "proc"
    proc.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(proc)], check=True)
    try:
        (proc / "precious").write_text("mounted file system")
        assert mounts_below(str(work)) == [str(proc)]
        remove_tree(str(work))
        assert not work.exists() and mounts_below(str(work)) == []
    finally:
        subprocess.run(["umount", str(proc)], capture_output=True, check=False)


def test_unneeded_kernel_modules_go_and_disk_drivers_stay(tmp_path, monkeypatch):
    kernel = tmp_path / "lib/modules/6.1.0-9-amd64/kernel"
    for rel in ("sound/core", "drivers/media/usb", "drivers/net/wireless/intel", "drivers/net/ethernet/intel",
                "drivers/ata", "drivers/nvme", "fs/ext4", "drivers/usb/storage"):
        (kernel / rel).mkdir(parents=True)
        (kernel / rel / "m.ko").write_text("x")
    ran = []
    monkeypatch.setattr(rescue_build, "_run", ran.append)   # depmod runs for real in the integration build
    rescue_build.trim_kernel_modules(str(tmp_path))
    assert not (kernel / "sound").exists() and not (kernel / "drivers/media").exists()
    assert not (kernel / "drivers/net/wireless").exists()
    for rel in ("drivers/net/ethernet/intel", "drivers/ata", "drivers/nvme", "fs/ext4", "drivers/usb/storage"):
        assert (kernel / rel / "m.ko").exists(), rel
    assert ran == [["chroot", str(tmp_path), "depmod", "6.1.0-9-amd64"]]
