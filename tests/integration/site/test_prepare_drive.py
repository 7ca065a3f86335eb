"""playbooks/prepare_drive.yml in the lab (issue 9): a blank disk attached to the backup server becomes a
backup drive (GPT, rescue partition written with dd from the compressed image on the server, GRUB on the
disk, the backup partition with the label the nightly run mounts by, DISKLABEL, the banks) that the nightly
run then uses, and `dervish status` and the drive log name it. A disk that is mounted, the server's backup
drive, and a missing or wrong confirmation are refused, and nothing changes. Without a rescue image on the
server, one is built (debootstrap), kept, and written, and the drive boots it under qemu: GRUB from the drive,
the rescue kernel, its / by UUID, up to the rescue system's ready line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from qemu import boot_disk

from dervish_engine.rescue_build import READY_MARKER
from lab import Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
WRAPPER = "/usr/local/sbin/dervish-backup"
RESCUE = "/var/lib/dervish/test-rescue.img.zst"
DISKLABEL = "test-drive-2"
DISK = "newdrive"
MIB = 1024 * 1024
BOOT_DISK = "bootdrive"
DEFAULT_RESCUE = "/var/lib/dervish/rescue.img.zst"  # prepare_drive.yml's default
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rescue_image(tmp_path_factory) -> tuple[Path, str]:
    """A small rescue filesystem image (ext4 with a kernel file in /boot), zstd-compressed, and its UUID."""
    work = tmp_path_factory.mktemp("rescue")
    root = work / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.1.0-test").write_bytes(b"not a real kernel")
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("rescue\n")
    img = work / "rescue.img"
    subprocess.run(["truncate", "-s", "24M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "RESCUE", "-d", str(root), str(img)], check=True)
    uuid = subprocess.run(["blkid", "-o", "value", "-s", "UUID", str(img)], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["zstd", "-q", "-f", str(img), "-o", f"{img}.zst"], check=True)
    return Path(f"{img}.zst"), uuid


@pytest.fixture(scope="module")
def server(lab: Lab, rescue_image) -> Lab:
    # the whole lab, as on a fresh lab the server pins every client's host key only in a run with it; laptop2 is
    # what the nightly run backs up onto the new drive
    site = run_playbook(lab, "site.yml")
    assert site.rc == 0, site.stdout[-6000:]
    lab.ssh(lab.server, "install -d -m 700 /var/lib/dervish")
    subprocess.run(["ssh", "-F", str(lab.ssh_config), lab.server, f"cat > {RESCUE}"],
                   stdin=rescue_image[0].open("rb"), check=True, timeout=60)
    return lab


@pytest.fixture()
def disk(server: Lab):
    """A blank 160 MiB disk attached to the server for this test only."""
    server.labctl("disk-detach", DISK, check=False)   # left over by an interrupted run
    device = server.attach_disk(DISK, "160M")
    yield device
    server.ssh(server.server, "umount /mnt/blank 2>/dev/null; true", check=False)
    server.detach_disk(DISK)


def prepare(lab: Lab, device: str, confirm: str | None, check: bool = False, label: str = DISKLABEL):
    extra = {"dervish_prepare_drive_device": device, "dervish_prepare_drive_label": label,
             "dervish_prepare_drive_rescue_image": RESCUE, "dervish_prepare_drive_rescue_size": "32M"}
    if confirm is not None:
        extra["dervish_prepare_drive_confirm"] = confirm
    return run_playbook(lab, "prepare_drive.yml", extravars=extra, check=check, limit="backup")


def said(run) -> str:
    """The run's output with YAML's line wrapping undone."""
    return " ".join(run.stdout.split())


def digest(lab: Lab, device: str) -> str:
    """A hash of the whole disk as the server reads it."""
    return lab.ssh(lab.server, f"sha256sum < {device}").stdout.split()[0]


def drivelog(lab: Lab) -> str:
    return lab.ssh(lab.server, "cat /var/log/backup_drivelog 2>/dev/null; true").stdout


def test_refusals_change_nothing(server: Lab, disk: str):
    blank = hashlib.sha256(bytes(160 * 1024 * 1024)).hexdigest()
    assert digest(server, disk) == blank
    log_before = drivelog(server)

    for confirm, expected in ((None, "dervish_prepare_drive_confirm is not set"),
                              ("/dev/sdz", "dervish_prepare_drive_confirm is '/dev/sdz': it must be exactly"),
                              (disk + " ", "must be exactly")):
        run = prepare(server, disk, confirm)
        assert run.rc != 0 and expected in said(run) and "nothing was changed" in said(run), run.stdout[-3000:]

    drive = (server.dir / "drive.loop").read_text().strip()
    drive_before = digest(server, drive + "p2")
    run = prepare(server, drive, drive)
    assert run.rc != 0 and f"target {drive} is the backup drive" in said(run), run.stdout[-3000:]
    assert digest(server, drive + "p2") == drive_before

    # a disk holding a mounted filesystem: refused, still mounted, its contents as they were
    # (read-only: a filesystem mounted read-write changes its own blocks in the background)
    server.ssh(server.server, f"mkdir -p /tmp/seed /mnt/blank && echo keep > /tmp/seed/file && "
                              f"mkfs.ext4 -q -F -d /tmp/seed {disk} && mount -o ro {disk} /mnt/blank")
    mounted = digest(server, disk)
    run = prepare(server, disk, disk)
    assert run.rc != 0 and f"target {disk}: {disk} is mounted on /mnt/blank" in said(run), run.stdout[-3000:]
    assert server.ssh(server.server, "cat /mnt/blank/file").stdout == "keep\n"
    assert digest(server, disk) == mounted
    server.ssh(server.server, f"umount /mnt/blank && dd if=/dev/zero of={disk} bs=4M count=40 conv=fsync "
                              "status=none")

    # --check shows the plan and writes nothing (also without the confirmation: a warning)
    run = prepare(server, disk, None, check=True)
    assert run.rc == 0, run.stdout[-3000:]
    assert f"write the rescue image {RESCUE} onto {disk}p2 with dd" in said(run)
    assert "a real run would refuse" in said(run)
    assert digest(server, disk) == blank
    assert drivelog(server) == log_before


def test_missing_rescue_image_is_built_or_refused(server: Lab, disk: str):
    """Without the image, --check shows the build as the first step; with the build turned off, the run stops
    with a message naming the variables, and neither the disk nor the server's images change."""
    blank = digest(server, disk)
    missing = "/var/lib/dervish/no-such-rescue.img.zst"
    extra = {"dervish_prepare_drive_device": disk, "dervish_prepare_drive_confirm": disk,
             "dervish_prepare_drive_label": DISKLABEL, "dervish_prepare_drive_rescue_image": missing,
             "dervish_prepare_drive_rescue_size": "32M"}
    run = run_playbook(server, "prepare_drive.yml", extravars=extra, check=True, limit="backup")
    assert run.rc == 0, run.stdout[-3000:]
    assert (f"build the rescue image {missing} (debootstrap bookworm from http://deb.debian.org/debian) and keep it"
            in said(run)), run.stdout[-3000:]
    run = run_playbook(server, "prepare_drive.yml", limit="backup",
                       extravars={**extra, "dervish_prepare_drive_rescue_build": False})
    assert run.rc != 0, run.stdout[-3000:]
    assert (f"dervish_prepare_drive_rescue_image: {missing} does not exist on this server and "
            "dervish_prepare_drive_rescue_build is false" in said(run)), run.stdout[-3000:]
    assert "nothing was changed" in said(run)
    assert digest(server, disk) == blank
    assert server.ssh(server.server, f"ls {missing}*", check=False).returncode != 0


def test_blank_disk_becomes_the_drive_the_nightly_run_uses(server: Lab, disk: str, rescue_image):
    run = prepare(server, disk, disk)
    assert run.rc == 0, run.stdout[-6000:]
    assert "step 5/5: write DISKLABEL" in said(run)

    dump = server.ssh(server.server, f"sfdisk --dump {disk}").stdout
    assert "label: gpt" in dump and dump.count(f"{disk}p") == 3, dump
    tags = {n: server.ssh(server.server, f"blkid -c /dev/null -o export {disk}p{n}").stdout for n in (2, 3)}
    assert f"UUID={rescue_image[1]}" in tags[2] and "LABEL=RESCUE" in tags[2]   # the image, as dd wrote it
    assert "LABEL=BACKUPDRIVE" in tags[3] and "TYPE=ext4" in tags[3]
    # GRUB's boot code in the MBR, its core in the BIOS boot partition, its files on the rescue partition
    assert "GRUB" in server.ssh(server.server, f"dd if={disk} bs=512 count=1 status=none | strings").stdout
    server.ssh(server.server, f"mkdir -p /mnt/blank && mount -o ro {disk}p2 /mnt/blank")
    try:
        grub = server.ssh(server.server, "ls /mnt/blank/boot/grub/i386-pc/normal.mod && "
                                         "cat /mnt/blank/boot/grub/grub.cfg").stdout
    finally:
        server.ssh(server.server, "umount /mnt/blank")
    assert f"root=UUID={rescue_image[1]}" in grub and "/boot/vmlinuz-6.1.0-test" in grub
    assert f"{DISKLABEL} " in drivelog(server).splitlines()[-1] and "prepared: " + disk in drivelog(server)

    # the lab's own drive unplugged: the nightly run finds the new one by its label and backs up onto it
    with server.drive_absent():
        nightly = server.ssh(server.server, f"{WRAPPER} laptop2-etc", check=False, timeout=300)
        assert nightly.returncode == 0, nightly.stdout + nightly.stderr
        assert f"backup run on drive {DISKLABEL}" in nightly.stdout
        lines = drivelog(server).splitlines()
        assert lines[-1].startswith(f"{DISKLABEL} ") and "finished: ok" in lines[-1]
        # the drive log names the drive holding each image the run made
        assert lines[-2].startswith(f"{DISKLABEL} ") and " image laptop2-etc/" in lines[-2], lines[-4:]
        assert lines[-2].endswith(" success"), lines[-2]
        server.ssh(server.server, f"mount {disk}p3 /backup")
        try:
            listing = server.ssh(server.server, "stat -c '%a %n' /backup /backup/DISKLABEL /backup/dervish && "
                                                "ls /backup/dervish/laptop2-etc").stdout.splitlines()
            table = server.ssh(server.server, "dervish status").stdout
            doc = json.loads(server.ssh(server.server, "dervish status --json").stdout)
        finally:
            server.ssh(server.server, "umount /backup")
    assert listing[:3] == ["700 /backup", "600 /backup/DISKLABEL", "700 /backup/dervish"], listing
    assert lines[-2].split(" image laptop2-etc/")[1].split()[0] in listing[3:], (lines[-2], listing)
    row = next(v for v in doc["vaults"] if v["vault"] == "laptop2-etc")
    assert row["disklabel"] == DISKLABEL and row["last_good"]
    header, *rows = table.splitlines()
    assert header.split()[-1] == "DRIVE" and any(r.split()[0] == "laptop2-etc" and r.split()[-1] == DISKLABEL
                                                 for r in rows), table

    # the prepared drive is now a backup drive: preparing it again is refused, and it stays as it is
    before = digest(server, disk + "p3")
    again = prepare(server, disk, disk, label="test-drive-3")
    assert again.rc != 0 and "is the backup drive" in said(again), again.stdout[-3000:]
    assert digest(server, disk + "p3") == before


# ------------------------------------------------------------------------- the rescue partition boots
def rescue_cache() -> Path:
    """The rescue image this machine built last with the current builder (keyed by the builder's code)."""
    engine = REPO / "plugins" / "module_utils" / "dervish_engine"
    key = hashlib.sha256(b"".join((engine / name).read_bytes() for name in ("rescue_build.py", "drive_prepare.py")))
    return Path(os.environ.get("BOOTDISK_CACHE", "/var/cache/dervish-test")) / f"rescue-{key.hexdigest()[:16]}.img.zst"


def test_drive_without_a_rescue_image_gets_one_built_and_it_boots(server: Lab, tmp_path):
    """No rescue image on the server: prepare_drive.yml builds one (debootstrap), keeps it at the default path,
    writes it onto the drive, and the drive boots the rescue system to its ready line on the console. A machine
    that built this builder's image before (the cache) hands the server that image instead, and only the
    writing and the boot run again."""
    cached = rescue_cache()
    server.ssh(server.server, f"rm -f {DEFAULT_RESCUE}")
    built = not cached.exists()
    if not built:
        with cached.open("rb") as source:
            subprocess.run(["ssh", "-F", str(server.ssh_config), server.server,
                            f"install -d -m 700 /var/lib/dervish && (umask 077 && cat > {DEFAULT_RESCUE})"],
                           stdin=source, check=True, timeout=300)
    server.labctl("disk-detach", BOOT_DISK, check=False)   # left over by an interrupted run
    device = server.attach_disk(BOOT_DISK, "1104M")        # the default 1 GiB rescue partition and a backup one
    try:
        extra = {"dervish_prepare_drive_device": device, "dervish_prepare_drive_confirm": device,
                 "dervish_prepare_drive_label": "test-drive-boot"}
        run = run_playbook(server, "prepare_drive.yml", extravars=extra, limit="backup")
        assert run.rc == 0, run.stdout[-6000:]
        if built:
            assert f"rescue image: {DEFAULT_RESCUE} built in" in said(run), run.stdout[-4000:]
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".partial")
            with partial.open("wb") as out:
                subprocess.run(["ssh", "-F", str(server.ssh_config), server.server, f"cat {DEFAULT_RESCUE}"],
                               stdout=out, check=True, timeout=300)
            partial.rename(cached)
        if built:   # kept for the next drive, root-only
            mode = server.ssh(server.server, f"stat -c %a {DEFAULT_RESCUE}").stdout.strip()
            assert mode == "600", mode
        uuid = said(run).split("one was written for its kernel (UUID ")[1].split(")")[0]
        # the server's node is this machine's loop device: what the server wrote must reach the image file
        subprocess.run(["blockdev", "--flushbufs", device], check=True, timeout=120)
        boot = boot_disk(server.dir / f"extra-{BOOT_DISK}.img", READY_MARKER, timeout=900, snapshot=True,
                         console_log=tmp_path / "console.log")
        assert boot, boot.console[-4000:]
        assert f"root={uuid}" in boot.marker_line, boot.marker_line
        print(f"the built rescue system booted from the new drive to its ready line in {boot.seconds:.0f} s")
    finally:
        server.detach_disk(BOOT_DISK)
