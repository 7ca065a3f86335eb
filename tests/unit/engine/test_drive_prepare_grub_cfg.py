"""The rescue partition's grub.cfg boots the newest kernel of the rescue image, by version, not by name."""

from __future__ import annotations

import pytest

from dervish_engine.drive_prepare import StepFailed, grub_cfg

UUID = "0f0e0d0c-0b0a-4908-8706-050403020100"


def test_newest_kernel_by_version_with_its_initrd(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    for name in ("vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64", "config-6.1.0-9"):
        (boot / name).write_text("x")
    cfg = grub_cfg(str(tmp_path), UUID)
    assert f"linux /boot/vmlinuz-6.1.0-10-amd64 root=UUID={UUID} ro" in cfg
    assert "initrd /boot/initrd.img-6.1.0-10-amd64" in cfg
    assert f"search --no-floppy --fs-uuid --set=root {UUID}" in cfg


def test_no_kernel_is_a_clear_error(tmp_path):
    (tmp_path / "boot").mkdir()
    with pytest.raises(StepFailed, match="no kernel in /boot"):
        grub_cfg(str(tmp_path), UUID)
