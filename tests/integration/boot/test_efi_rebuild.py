"""Issue 9's boot proof for EFI: a disk whose metadata says the client booted by EFI is rebuilt with an EFI
system partition and GRUB's removable-path loader, and boots under qemu with UEFI firmware (OVMF).

This machine's kernel mounts no vfat, which is exactly the server this must work on: the ESP is staged on
a tmpfs, filled by grub-install and written into the partition with mcopy (disk_rebuild's staging). The
trees are those of lab/bootdisk.sh's cached image (its /boot, / and /data, read-only), laid out on a GPT
disk with an ESP in front: the rebuilt disk boots to the image's marker only if GPT, the ESP, GRUB for
EFI, the saved UUIDs and the fstab all came out right.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from qemu import BOOTDISK, OVMF, boot_disk, boot_marker

from dervish_engine import disk_plan, disk_rebuild

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isdir("/usr/lib/grub/x86_64-efi") or not OVMF.is_file(),
                                 reason="needs grub-efi-amd64-bin and ovmf (make system-packages)")]
MiB = 1024 * 1024
DISK = 1100 * MiB
ESP_UUID, ESP_LABEL = "1A2B-3C4D", "EFI"
# the saved table: the ESP in front, then the image's own partitions and sizes (boot, root, swap, data)
TABLE = ("label: gpt\n"
         "size=32MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n"
         "size=160MiB, type=L, name=boot\nsize=600MiB, type=L, name=root\n"
         "size=64MiB, type=S, name=swap\ntype=L, name=data\n")


def run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, check=True, capture_output=True, text=True).stdout


class Loops:
    """Loop devices attached by this test, detached by name at the end (they are global)."""

    def __init__(self) -> None:
        self.attached: list[str] = []
        self.mounted: list[str] = []

    def attach(self, image: Path, read_only: bool = False, partitions: bool = True) -> str:
        loop = run("losetup", "-f", "--show", *(["-r"] if read_only else []), str(image)).strip()
        self.attached.append(loop)
        if partitions:
            run("partx", "-a", loop)   # this kernel adds no partition nodes by itself
        return loop

    def mount(self, node: str, where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "ro,noload", node, str(where))
        self.mounted.append(str(where))
        return where

    def detach(self, loop: str) -> None:
        subprocess.run(["partx", "-d", loop], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
        self.attached.remove(loop)

    def close(self) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", where], capture_output=True, check=False)
        for loop in list(self.attached):
            self.detach(loop)


@pytest.fixture()
def loops():
    made = Loops()
    yield made
    made.close()


def blkid(node: str) -> dict[str, str]:
    out = run("blkid", "-c", "/dev/null", "-o", "export", node)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def efi_metadata(loops: Loops, tmp_path: Path, source: str) -> dict:
    """Restore metadata of an EFI client whose filesystems are the boot disk image's (same UUIDs, labels and
    fstab) on the GPT table above, as dervish-metadata records it."""
    scratch = tmp_path / "client-disk.img"
    with open(scratch, "wb") as handle:
        handle.truncate(DISK)
    client = loops.attach(scratch, partitions=False)
    run("sfdisk", "-q", client, stdin=TABLE)
    dump = run("sfdisk", "--dump", client)
    loops.detach(client)
    saved = {number: blkid(f"{source}p{number}") for number in (1, 2, 3, 4)}   # boot, root, swap, data
    ids = {f"{client}p1": {"TYPE": "vfat", "UUID": ESP_UUID, "LABEL": ESP_LABEL}}
    for client_number, source_number in ((2, 1), (3, 2), (4, 3), (5, 4)):
        found = saved[source_number]
        ids[f"{client}p{client_number}"] = {key: found[key] for key in ("TYPE", "UUID", "LABEL")}
    fstab = [{"spec": f"UUID={saved[2]['UUID']}", "file": "/", "vfstype": "ext4"},
             {"spec": f"UUID={saved[1]['UUID']}", "file": "/boot", "vfstype": "ext4"},
             {"spec": f"UUID={ESP_UUID}", "file": "/boot/efi", "vfstype": "vfat"},
             {"spec": f"UUID={saved[4]['UUID']}", "file": "/data", "vfstype": "ext4"},
             {"spec": f"UUID={saved[3]['UUID']}", "file": "none", "vfstype": "swap"}]
    return {"boot": {"firmware": "efi"}, "items": {
        f"sfdisk/{os.path.basename(client)}": {"status": "ok", "output": dump},
        "blkid": {"status": "ok", "output": "", "data": ids},
        "fstab": {"status": "ok", "output": "", "data": fstab},
        "lsblk": {"status": "ok", "output": "", "data": {"blockdevices": [
            {"kname": os.path.basename(client), "size": DISK}]}},
    }}


def test_an_efi_client_rebuilt_on_a_server_without_vfat_boots_by_uefi(loops: Loops, tmp_path: Path) -> None:
    image = tmp_path / "bootdisk.img"
    run(str(BOOTDISK), "extract", str(image))
    source = loops.attach(image, read_only=True)
    trees = {"boot": loops.mount(f"{source}p1", tmp_path / "src/boot"),
             "root": loops.mount(f"{source}p2", tmp_path / "src/root"),
             "data": loops.mount(f"{source}p4", tmp_path / "src/data")}
    metadata = efi_metadata(loops, tmp_path, source)
    plan = disk_plan.build_plan(metadata, [disk_plan.VaultSource("root", "/", str(trees["root"])),
                                           disk_plan.VaultSource("boot", "/boot", str(trees["boot"])),
                                           disk_plan.VaultSource("data", "/data", str(trees["data"]))],
                                image="efi-client/latest")
    assert plan.boot_loader == "efi" and plan.label == "gpt"

    rebuilt = tmp_path / "rebuilt.img"
    with open(rebuilt, "wb") as handle:
        handle.truncate(DISK)
    target = loops.attach(rebuilt, partitions=False)
    lines: list[str] = []
    rebuild = disk_rebuild.Rebuild(plan, target, log=lines.append)
    rebuild.run_all()
    log = "\n".join(lines)
    if "vfat" not in disk_rebuild.kernel_filesystems():
        assert "write the staged vfat of partition 1 with mcopy" in log, log
    esp_ids = blkid(f"{target}p1")
    assert (esp_ids["TYPE"], esp_ids["UUID"], esp_ids["LABEL"]) == ("vfat", ESP_UUID, ESP_LABEL), esp_ids
    esp = subprocess.run(["mdir", "-/", "-b", "-i", f"{target}p1", "::/"], check=True, capture_output=True,
                         text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "::/EFI/BOOT/BOOTX64.EFI" in esp.upper(), esp
    loops.detach(target)

    uuids = {"/": blkid(f"{source}p2")["UUID"], "/data": blkid(f"{source}p4")["UUID"]}
    boot = boot_disk(rebuilt, boot_marker(), timeout=900, snapshot=True, efi=True)
    assert boot, f"no boot marker within {boot.seconds:.0f} s; console:\n{boot.console[-4000:]}"
    assert f"root={uuids['/']} data={uuids['/data']}" in boot.marker_line, (boot.marker_line, uuids)
    # booted by the firmware's boot manager from the ESP, and the kernel runs on UEFI (no BIOS boot code
    # was written: a GPT protective MBR and no BIOS boot partition)
    assert "BdsDxe: starting" in boot.console, boot.console[:2000]
    assert "efi: EFI v" in boot.console, boot.console[:4000]
    print(f"EFI rebuild: boot marker after {boot.seconds:.0f} s under OVMF")
