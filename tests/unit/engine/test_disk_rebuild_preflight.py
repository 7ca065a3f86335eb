"""Before a bare-metal rebuild touches the target, the server must have every tool the plan runs and a kernel
that mounts every new filesystem: a rebuild that stopped at a missing mkfs, GRUB platform or filesystem
driver would leave a wiped disk. (This machine's own kernel has no vfat, which is how an EFI rebuild here
would have failed half-way; a vfat it cannot mount is now staged and written with mtools' mcopy, which
must then be there.)"""

from __future__ import annotations

from dervish_engine.disk_plan import DiskPlan, Partition
from dervish_engine.disk_rebuild import kernel_filesystems, missing_for, staged_parts

EVERYTHING = {"ext4", "xfs", "vfat", "btrfs"}


def efi_plan(boot_loader: str = "efi") -> DiskPlan:
    parts = (Partition(1, "/dev/sda1", 2048, 131072, "U", "vfat", "ABCD-EF01", "ESP", "/boot/efi"),
             Partition(2, "/dev/sda2", 133120, 2000000, "L", "xfs", None, None, "/"),
             Partition(3, "/dev/sda3", 2133120, 100000, "S", "swap", None, None, None))
    return DiskPlan(image="v/img", disk="sda", dump="", target_dump="", label="gpt", sector_size=512,
                    disk_bytes=2 * 1024 ** 3, partitions=parts, placements=(), left_out=(),
                    boot_loader=boot_loader, firmware="efi")


def grub(tmp_path, *platforms):
    for platform in platforms:
        (tmp_path / platform).mkdir()
    return str(tmp_path)


def test_a_server_with_everything_may_rebuild(tmp_path):
    assert missing_for(efi_plan(), which=lambda tool: f"/usr/sbin/{tool}", filesystems=EVERYTHING,
                       grub_lib=grub(tmp_path, "x86_64-efi")) == []


def test_each_missing_tool_names_its_package(tmp_path):
    missing = missing_for(efi_plan(), which=lambda tool: None if tool in ("mkfs.xfs", "mkfs.vfat") else tool,
                          filesystems=EVERYTHING, grub_lib=grub(tmp_path, "x86_64-efi"))
    assert missing == ["mkfs.vfat (apt install dosfstools)", "mkfs.xfs (apt install xfsprogs)"]


def test_the_boot_loader_platform_must_be_there(tmp_path):
    lib = grub(tmp_path, "i386-pc")
    missing = missing_for(efi_plan(), which=lambda tool: tool, filesystems=EVERYTHING, grub_lib=lib)
    assert missing == [f"GRUB for EFI ({lib}/x86_64-efi: apt install grub-efi-amd64-bin)"]
    assert missing_for(efi_plan("bios"), which=lambda tool: tool, filesystems=EVERYTHING, grub_lib=lib) == []
    assert missing_for(efi_plan("none"), which=lambda tool: None if tool == "grub-install" else tool,
                       filesystems=EVERYTHING, grub_lib=str(tmp_path / "none")) == []


def test_a_filesystem_the_kernel_cannot_mount(tmp_path):
    missing = missing_for(efi_plan(), which=lambda tool: tool, filesystems={"vfat", "ext4"},
                          grub_lib=grub(tmp_path, "x86_64-efi"))
    assert missing == ["its kernel's xfs filesystem, to mount the new / (partition 2): "
                       "neither built in nor a module"]


def test_a_vfat_the_kernel_cannot_mount_is_written_with_mcopy(tmp_path):
    lib = grub(tmp_path, "x86_64-efi")
    assert missing_for(efi_plan(), which=lambda tool: tool, filesystems={"xfs"}, grub_lib=lib) == []
    assert staged_parts(efi_plan(), filesystems={"xfs"}) == [efi_plan().partitions[0]]
    assert staged_parts(efi_plan(), filesystems={"xfs", "vfat"}) == []
    missing = missing_for(efi_plan(), which=lambda tool: None if tool == "mcopy" else tool, filesystems={"xfs"},
                          grub_lib=lib)
    assert missing == ["mcopy (apt install mtools), to write the new /boot/efi (partition 1): "
                       "this kernel cannot mount vfat"]


def test_kernel_filesystems_built_in_and_as_modules(tmp_path):
    (tmp_path / "filesystems").write_text("nodev\tproc\n\text4\n\txfs\n")
    (tmp_path / "modules.alias").write_text("alias fs-vfat vfat\nalias pci:v00008086d* e1000e\nalias fs-btrfs btrfs\n")
    found = kernel_filesystems(str(tmp_path / "filesystems"), str(tmp_path))
    assert found == {"proc", "ext4", "xfs", "vfat", "btrfs"}
    assert "vfat" not in kernel_filesystems(str(tmp_path / "filesystems"), str(tmp_path / "no-modules"))
