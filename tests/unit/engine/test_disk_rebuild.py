"""disk_rebuild on real loop devices: the table from a saved dump (same size, and grown on a larger disk),
the partitions' nodes, filesystems with the saved UUID and label."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dervish_engine import disk_plan, disk_rebuild

MiB = 1024 * 1024
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def loops(tmp_path):
    """loops(size_mib) -> a blank loop device; all detached by name at the end."""
    made = []

    def attach(size: int) -> str:
        img = tmp_path / f"disk{len(made)}.img"
        with open(img, "wb") as handle:
            handle.truncate(size * MiB)
        loop = run("losetup", "-f", "--show", str(img)).strip()
        made.append(loop)
        return loop

    yield attach
    for loop in made:
        subprocess.run(["partx", "-d", loop], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def source_plan(loops, **kw) -> disk_plan.DiskPlan:
    src = loops(24)
    run("sfdisk", "-q", src, stdin="label: gpt\nsize=8MiB, type=L, name=one\ntype=L, name=two\n")
    dump = run("sfdisk", "--dump", src)
    meta = {"boot": {"firmware": "bios"}, "items": {
        f"sfdisk/{os.path.basename(src)}": {"status": "ok", "output": dump},
        "blkid": {"status": "ok", "output": "", "data": {
            f"{src}p1": {"TYPE": "ext4", "UUID": "0d6c2c4e-2b6f-4f5c-9d6c-1a2b3c4d5e6f", "LABEL": "rb-one"},
            f"{src}p2": {"TYPE": "swap", "UUID": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "LABEL": "rb-two"}}},
        "fstab": {"status": "ok", "output": "", "data": [
            {"spec": "LABEL=rb-one", "file": "/", "vfstype": "ext4"}]},
        "lsblk": {"status": "ok", "output": "", "data": {"blockdevices": [
            {"kname": os.path.basename(src), "size": 24 * MiB}]}},
    }}
    return disk_plan.build_plan(meta, [disk_plan.VaultSource("v", "/", "/nonexistent")], image="v/img", **kw), dump, src


def dump_without_names(text: str, device: str) -> list[str]:
    return [line.replace(device, "DISK") for line in text.splitlines() if not line.startswith("device:")]


def test_the_table_and_filesystems_come_back_as_saved(loops):
    plan, dump, src = source_plan(loops)
    target = loops(24)
    rebuild = disk_rebuild.Rebuild(plan, target, log=lambda line: None)
    rebuild.partition()
    rebuild.make_filesystems()
    assert dump_without_names(run("sfdisk", "--dump", target), target) == dump_without_names(dump, src)
    probe = run("blkid", "-c", "/dev/null", "-o", "export", f"{target}p1", f"{target}p2")
    assert "LABEL=rb-one" in probe and "UUID=0d6c2c4e-2b6f-4f5c-9d6c-1a2b3c4d5e6f" in probe and "TYPE=ext4" in probe
    assert "LABEL=rb-two" in probe and "UUID=7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" in probe and "TYPE=swap" in probe
    assert rebuild.result.steps[:2] == [f"step 1/{len(rebuild.titles)}: partition the disk from the saved sfdisk dump",
                                        f"step 2/{len(rebuild.titles)}: make the partitions' device nodes"]


def test_the_last_partition_grows_on_a_larger_disk_when_asked(loops):
    plan, _dump, _src = source_plan(loops, grow_last_partition=True)
    target = loops(40)
    disk_rebuild.Rebuild(plan, target, log=lambda line: None).partition()
    _header, parts = disk_plan.parse_dump(run("sfdisk", "--dump", target))
    last = parts[-1]
    end, usable = int(last["start"]) + int(last["size"]), 40 * MiB // 512 - 33   # GPT's backup header
    assert 24 * MiB // 512 < end <= usable and usable - end < 2048   # to the end, within sfdisk's 1 MiB grain


def test_a_failed_step_is_the_error_and_everything_is_unmounted_also_when_unmount_fails(loops):
    plan, _dump, _src = source_plan(loops)          # its vault's image tree does not exist: the copy fails
    target = loops(24)
    lines: list[str] = []
    here = os.getcwd()

    def log(line: str) -> None:
        lines.append(line)
        if "copy vault v" in line and line.startswith("step"):
            os.chdir(rebuild.mounted[0])             # a process in the filesystem: umount fails (busy)

    rebuild = disk_rebuild.Rebuild(plan, target, log=log)
    try:
        with pytest.raises(disk_rebuild.RebuildError, match=r"^step 6/8 \(copy vault v\) failed: rsync exited"):
            rebuild.run_all()
    finally:
        os.chdir(here)
        subprocess.run(["umount", f"{target}p1"], capture_output=True, check=False)
        if rebuild.root:
            os.rmdir(rebuild.root)
    assert any(line.startswith("could not unmount the rebuilt filesystems") for line in lines), lines
    assert "step 8/8: unmount" in lines


@pytest.mark.skipif(not os.path.isdir("/usr/lib/grub/x86_64-efi"), reason="needs grub-efi-amd64-bin")
def test_an_efi_disk_comes_back_with_its_esp_written_by_mcopy_where_the_kernel_has_no_vfat(loops, tmp_path):
    """The EFI system partition is staged (this machine's kernel mounts no vfat; elsewhere the stage is
    forced by saying vfat cannot be mounted), filled from its vault and by grub-install, and written with
    mcopy: the saved files and GRUB's removable-path loader are in the partition, with its UUID and label."""
    src = loops(64)
    run("sfdisk", "-q", src, stdin="label: gpt\nsize=16MiB, type=U, name=esp\ntype=L, name=root\n")
    dump = run("sfdisk", "--dump", src)
    meta = {"boot": {"firmware": "efi"}, "items": {
        f"sfdisk/{os.path.basename(src)}": {"status": "ok", "output": dump},
        "blkid": {"status": "ok", "output": "", "data": {
            f"{src}p1": {"TYPE": "vfat", "UUID": "ABCD-EF01", "LABEL": "RB-ESP"},
            f"{src}p2": {"TYPE": "ext4", "UUID": "5c1f3a2b-7d4e-4f6a-9b8c-0d1e2f3a4b5c", "LABEL": "rb-root"}}},
        "fstab": {"status": "ok", "output": "", "data": [
            {"spec": "UUID=5c1f3a2b-7d4e-4f6a-9b8c-0d1e2f3a4b5c", "file": "/", "vfstype": "ext4"},
            {"spec": "UUID=ABCD-EF01", "file": "/boot/efi", "vfstype": "vfat"}]},
        "lsblk": {"status": "ok", "output": "", "data": {"blockdevices": [
            {"kname": os.path.basename(src), "size": 64 * MiB}]}},
    }}
    root_tree, esp_tree = tmp_path / "root-tree", tmp_path / "esp-tree"
    (root_tree / "etc").mkdir(parents=True)
    (root_tree / "etc/hostname").write_text("efi-client\n")
    (esp_tree / "EFI/debian").mkdir(parents=True)
    (esp_tree / "EFI/debian/grub.cfg").write_text("search.fs_uuid 5c1f3a2b root\n")
    plan = disk_plan.build_plan(meta, [disk_plan.VaultSource("root", "/", str(root_tree)),
                                       disk_plan.VaultSource("esp", "/boot/efi", str(esp_tree))], image="v/img")
    assert plan.boot_loader == "efi"
    target = loops(64)
    lines: list[str] = []
    rebuild = disk_rebuild.Rebuild(plan, target, log=lines.append, filesystems={"ext4"})
    result = rebuild.run_all()
    assert f"step {len(rebuild.titles) - 1}/{len(rebuild.titles)}: write the staged vfat of partition 1 with mcopy" \
        in result.steps
    probe = run("blkid", "-c", "/dev/null", "-o", "export", f"{target}p1")
    assert "TYPE=vfat" in probe and "UUID=ABCD-EF01" in probe and "LABEL=RB-ESP" in probe
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    out = tmp_path / "esp-out"
    subprocess.run(["mcopy", "-s", "-n", "-i", f"{target}p1", "::/EFI", str(out)], check=True, env=env,
                   capture_output=True)
    assert (out / "debian/grub.cfg").read_text() == "search.fs_uuid 5c1f3a2b root\n"
    assert (out / "BOOT/BOOTX64.EFI").read_bytes()[:2] == b"MZ"          # a PE image: GRUB's loader
    assert rebuild.mounted == []
    mounts = Path("/proc/self/mounts").read_text(encoding="ascii")
    assert f"{target}p1 " not in mounts and f"{target}p2 " not in mounts
