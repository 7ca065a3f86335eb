"""Issue 9's boot proof, part 1: the test system disk (lab/bootdisk.sh) is built once, cached by the
builder's hash, and boots headless under qemu until its marker unit sees /, /data and swap up.

The first run on a machine builds the image (debootstrap from deb.debian.org, a few minutes); later
runs reuse the cached copy. A boot under software emulation takes about 25 s on a quiet machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from qemu import BOOTDISK, boot_disk, boot_marker

pytestmark = [pytest.mark.slow]
GIB = 1024**3


def bootdisk(*args: str, env: dict[str, str] | None = None, timeout: int = 1200) -> str:
    result = subprocess.run([str(BOOTDISK), *args], text=True, capture_output=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, check=False)
    assert result.returncode == 0, result.stderr
    print(result.stderr, end="")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def cached_image() -> Path:
    start = time.monotonic()
    path = Path(bootdisk("path"))
    print(f"boot disk image: {path} (ready in {time.monotonic() - start:.0f} s)")
    return path


def probe(image: Path, start_sector: int, size_sectors: int) -> dict[str, str]:
    out = subprocess.run(["blkid", "-c", "/dev/null", "-p", "-o", "export", "-O", str(start_sector * 512),
                          "-S", str(size_sectors * 512), str(image)], text=True, capture_output=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def partitions(image: Path) -> list[tuple[int, int, str]]:
    dump = subprocess.run(["sfdisk", "--dump", str(image)], text=True, capture_output=True, check=True).stdout
    found = re.findall(r"start=\s*(\d+), size=\s*(\d+), type=(\w+)", dump)
    assert "label: dos" in dump, dump
    return [(int(start), int(size), kind) for start, size, kind in found]


def test_the_cache_is_keyed_by_the_builders_hash(cached_image: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(BOOTDISK.read_bytes()).hexdigest()[:16]
    assert cached_image.name == f"bootdisk-{digest}.img.zst" and cached_image.is_file()
    assert not cached_image.is_relative_to(BOOTDISK.parent.parent)  # outside the repo
    start = time.monotonic()
    assert bootdisk("path") == str(cached_image)  # cached: no second build
    assert time.monotonic() - start < 5
    changed = tmp_path / "bootdisk.sh"
    shutil.copy(BOOTDISK, changed)
    with open(changed, "a") as handle:
        handle.write("# any change to the builder\n")
    other = subprocess.run([str(changed), "key"], text=True, capture_output=True, check=True).stdout.strip()
    assert other != str(cached_image) and Path(other).parent == cached_image.parent


def test_the_image_is_small_sparse_and_partitioned_as_documented(cached_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    bootdisk("extract", str(image))
    stat = image.stat()
    assert stat.st_size <= GIB and stat.st_blocks * 512 < 0.8 * stat.st_size, stat
    parts = partitions(image)
    assert [kind for _start, _size, kind in parts] == ["83", "83", "82", "83"], parts
    found = [probe(image, start, size) for start, size, _kind in parts]
    assert [(p.get("TYPE"), p.get("LABEL")) for p in found] == [
        ("ext4", "sysboot"), ("ext4", "sysroot"), ("swap", "sysswap"), ("ext4", "sysdata")], found
    print(f"image: {stat.st_size / GIB:.2f} GiB apparent, {stat.st_blocks * 512 / 2**20:.0f} MiB allocated, "
          f"{cached_image.stat().st_size / 2**20:.0f} MiB cached (zstd)")


def test_the_built_image_boots_under_qemu(cached_image: Path, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    bootdisk("extract", str(image))
    parts = partitions(image)
    root, data = (probe(image, *parts[i][:2])["UUID"] for i in (1, 3))
    boot = boot_disk(image, boot_marker(), timeout=600, console_log=tmp_path / "console.log")
    print(f"boot: marker after {boot.seconds:.0f} s: {boot.marker_line}")
    assert boot, boot.console[-4000:]
    # the marker unit checked the partitions the fstab names by UUID
    assert f"root={root}" in boot.marker_line and f"data={data}" in boot.marker_line, boot.marker_line
    assert "swap=/dev/vda3" in boot.marker_line, boot.marker_line


def test_no_marker_means_false_within_the_timeout(tmp_path: Path) -> None:
    """A disk that does not boot is a False result once the timeout passes, and qemu is gone."""
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as handle:
        handle.truncate(64 * 1024**2)
    start = time.monotonic()
    boot = boot_disk(blank, "DERVISH-BOOT-OK", timeout=15)
    assert not boot and boot.marker_line is None and 14 < time.monotonic() - start < 40
    assert str(blank) not in subprocess.run(["ps", "-eo", "args"], text=True, capture_output=True, check=True).stdout
