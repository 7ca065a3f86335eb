"""Unit tests for dervish_metadata: parsers on recorded tool output, the collector's item statuses, the layout.

LVM, md and EFI cannot be built on the test machine (no device-mapper, no md, BIOS boot), so their
parsing is tested on recorded output in tests/unit/fixtures/metadata/ and the collector's handling of
them with a runner that replays those recordings.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.dervish.backup.plugins.module_utils import dervish_metadata as md
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import metadata_layout as layout

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "metadata"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --------------------------------------------------------------------------------------------- parsers
def test_disks_are_whole_disks_and_partitioned_loops():
    tree = json.loads(fixture("lsblk.json"))
    # sda and nvme0n1 (no partitions: still a disk); loop1 has a partition table; loop0 (a mounted
    # squashfs), the empty card reader sdd and the cdrom sr0 are not disks
    assert md.disks_from_lsblk(tree) == ["loop1", "sda", "nvme0n1"]


def test_flatten_lsblk_keeps_every_level():
    names = [dev["name"] for dev in md.flatten_lsblk(json.loads(fixture("lsblk.json")))]
    assert names[:7] == ["loop0", "loop1", "loop1p1", "sda", "sda1", "md0", "sda2"]
    assert "vg0-root" in names and all("children" not in d for d in md.flatten_lsblk({"blockdevices": []}))


def test_fill_from_blkid_only_fills_what_lsblk_left_empty():
    # lsblk without udevd: no FSTYPE/UUID/LABEL; blkid's probe has them
    tree = {"blockdevices": [{"name": "loop3", "path": "/dev/loop3", "type": "loop", "fstype": None, "uuid": None,
                              "children": [
                                  {"name": "loop3p2", "path": "/dev/loop3p2", "type": "part", "fstype": None,
                                   "uuid": None, "label": None, "partuuid": None, "partlabel": "keep"}]}]}
    blkid = {"/dev/loop3p2": {"TYPE": "ext4", "UUID": "u-1", "LABEL": "data", "PARTUUID": "p-1", "PARTLABEL": "x"}}
    assert md.fill_from_blkid(tree, blkid) == ["/dev/loop3p2"]
    part = tree["blockdevices"][0]["children"][0]
    assert part == {"name": "loop3p2", "path": "/dev/loop3p2", "type": "part", "fstype": "ext4", "uuid": "u-1",
                    "label": "data", "partuuid": "p-1", "partlabel": "keep", "filled_from": "blkid"}
    assert "filled_from" not in tree["blockdevices"][0]
    full = json.loads(fixture("lsblk.json"))
    assert md.fill_from_blkid(full, md.parse_blkid(fixture("blkid.txt"))) == []  # udev had everything


def test_parse_lvm_reports():
    pvs = md.parse_lvm_report(fixture("pvs.json"), "pv")
    vgs = md.parse_lvm_report(fixture("vgs.json"), "vg")
    lvs = md.parse_lvm_report(fixture("lvs.json"), "lv")
    assert [pv["pv_name"] for pv in pvs] == ["/dev/md1", "/dev/mapper/sda3_crypt"]
    assert vgs[0] == {"vg_name": "vg0", "vg_uuid": "3fYk2d-Qx7a-0Zp1-Nc4r-Ta9e-Hh2b-Ww0d1c", "vg_attr": "wz--n-",
                      "vg_size": "254869356544", "vg_free": "21474836480", "vg_extent_size": "4194304",
                      "pv_count": "1", "lv_count": "3"}
    assert [(lv["vg_name"], lv["lv_name"], lv["devices"]) for lv in lvs] == [
        ("vg0", "root", "/dev/md1(0)"), ("vg0", "swap", "/dev/md1(7680)"), ("vg0", "home", "/dev/md1(9728)"),
        ("vgcrypt", "data", "/dev/mapper/sda3_crypt(0)")]
    assert md.parse_lvm_report(fixture("lvs-none.json"), "lv") == []


def test_parse_lvm_report_rejects_garbage():
    with pytest.raises(ValueError):
        md.parse_lvm_report("  WARNING: Failed to connect to lvmetad.\n", "pv")


def test_parse_mdadm_scan_verbose_with_device_lines():
    arrays = md.parse_mdadm_scan(fixture("mdadm-detail-scan-verbose.txt"))
    assert arrays == [
        {"device": "/dev/md0", "level": "raid1", "num-devices": "2", "metadata": "1.2", "name": "fileserver:0",
         "UUID": "7c0a4b3e:5d2f9a11:0e8b6c47:a3f21d90", "devices": ["/dev/sda1", "/dev/sdb1"]},
        {"device": "/dev/md/1", "level": "raid1", "num-devices": "2", "metadata": "1.2", "spares": "1",
         "name": "fileserver:1", "UUID": "2e9d8c7b:6a5f4e3d:2c1b0a99:88776655",
         "devices": ["/dev/sda2", "/dev/sdb2", "/dev/sdc2"]},
    ]


def test_parse_mdadm_scan_plain_and_mdadm_conf_lines():
    text = "MAILADDR root\nDEVICE partitions\n" + fixture("mdadm-detail-scan.txt")
    arrays = md.parse_mdadm_scan(text)
    assert [a["device"] for a in arrays] == ["/dev/md0", "/dev/md/1", "/dev/md127"]
    assert arrays[2] == {"device": "/dev/md127", "metadata": "0.90", "UUID": "a1b2c3d4:e5f60718:293a4b5c:6d7e8f90"}


def test_parse_efibootmgr():
    boot = md.parse_efibootmgr(fixture("efibootmgr-v.txt"))
    assert boot["current"] == "0001" and boot["order"] == ["0001", "0000", "0002"]
    assert boot["timeout"] == "1 seconds"
    assert [(e["number"], e["active"], e["label"]) for e in boot["entries"]] == [
        ("0000", True, "Windows Boot Manager"), ("0001", True, "debian"),
        ("0002", False, "UEFI: PXE IPv4 Intel(R) Ethernet Connection I219-V")]
    assert boot["entries"][1]["path"] == "HD(1,GPT,0c4a7b0e-3f1d-4e5c-9a8b-7d6e5f4a3b2c,0x800,0x100000)" \
                                         "/File(\\EFI\\debian\\shimx64.efi)"


def test_parse_debconf_grub_pc():
    answers = md.parse_debconf_show(fixture("debconf-show-grub-pc.txt"))
    assert answers["grub-pc/timeout"] == "5" and answers["grub-pc/disk_description"] == ""
    assert md.grub_devices(answers) == [
        "/dev/disk/by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A",
        "/dev/disk/by-id/ata-WDC_WD10EZEX-08WN4A0_WD-WCC6Y1234567"]
    assert md.grub_devices({}) == []


def test_parse_blkid_with_escaped_quotes():
    devices = md.parse_blkid(fixture("blkid.txt"))
    assert devices["/dev/md0"] == {"LABEL": "boot", "UUID": "3a1f0c2e-8b4d-4e6f-9a7b-c5d3e1f2a4b6",
                                   "BLOCK_SIZE": "4096", "TYPE": "ext4"}
    assert devices["/dev/mapper/vg0-root"]["LABEL"] == 'root "main"'
    assert devices["/dev/sdc1"] == {"PARTLABEL": "EFI System Partition",
                                    "PARTUUID": "0c4a7b0e-3f1d-4e5c-9a8b-7d6e5f4a3b2c"}


def test_parse_fstab_os_release_swaps_df():
    fstab = md.parse_table("# <file system> <mount point>\nUUID=abc / ext4 errors=remount-ro 0 1\n\n"
                           "/dev/vg0/swap none swap sw 0 0\n", md.FSTAB_FIELDS)
    assert fstab == [{"spec": "UUID=abc", "file": "/", "vfstype": "ext4", "mntopts": "errors=remount-ro",
                      "freq": "0", "passno": "1"},
                     {"spec": "/dev/vg0/swap", "file": "none", "vfstype": "swap", "mntopts": "sw", "freq": "0",
                      "passno": "0"}]
    osr = md.parse_key_values('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    assert osr == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian", "VERSION_ID": "12"}
    swaps = md.parse_swaps("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                           "/dev/dm-1                               partition\t8388604\t\t0\t\t-2\n")
    assert swaps == [{"filename": "/dev/dm-1", "type": "partition", "size": "8388604", "used": "0",
                      "priority": "-2"}]
    df = md.parse_df("Filesystem     Type 1024-blocks    Used Available Capacity Mounted on\n"
                     "/dev/md0       ext4     1011672  123456    819260      14% /boot\n"
                     "/dev/sdb1      vfat      523248    5964    517284       2% /media/my stick\n")
    assert df[1]["mounted_on"] == "/media/my stick" and df[0]["type"] == "ext4"


# ------------------------------------------------------------------------------------------- collector
class Replay:
    """A stand-in for subprocess.run that answers each fixed argv with recorded output."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, **kwargs):
        assert "shell" not in kwargs and isinstance(argv, list)
        self.calls.append(argv)
        key = " ".join([os.path.basename(argv[0]), *argv[1:]])
        for prefix, (rc, out, err) in self.answers.items():
            if key.startswith(prefix):
                return subprocess.CompletedProcess(argv, rc, out, err)
        raise AssertionError(f"unexpected command {key}")


def fake_root(tmp_path: Path, efi: bool) -> Path:
    root = tmp_path / "root"
    for rel, text in {"etc/fstab": "UUID=5e4d / ext4 defaults 0 1\n",
                      "etc/crypttab": "# <target name> <source device> <key file> <options>\n"
                                      "sda3_crypt UUID=8d1f2e3c-4b5a-6978 none luks,discard\n",
                      "proc/self/mounts": "/dev/md0 /boot ext4 rw 0 0\n",
                      "proc/swaps": "Filename Type Size Used Priority\n", "proc/mdstat": "Personalities : [raid1]\n",
                      "usr/lib/os-release": "ID=debian\n", "proc/sys/kernel/hostname": "fileserver\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if efi:
        (root / "sys/firmware/efi").mkdir(parents=True)
    return root


def fileserver_runner() -> Replay:
    return Replay({
        "lsblk --json": (0, fixture("lsblk.json"), ""),
        "sfdisk --dump /dev/sda": (0, fixture("sfdisk-dump-gpt.txt"), ""),
        "sfdisk --dump /dev/loop1": (0, "label: dos\n", ""),
        "sfdisk --dump /dev/nvme0n1": (1, "", "sfdisk: /dev/nvme0n1: does not contain a recognized partition table\n"),
        "blkid -c /dev/null": (0, fixture("blkid.txt"), ""),
        "df -P -T -l": (0, "Filesystem Type 1024-blocks Used Available Capacity Mounted on\n", ""),
        "mdadm --detail --scan": (0, fixture("mdadm-detail-scan-verbose.txt"), ""),
        "pvs ": (0, fixture("pvs.json"), ""),
        "vgs ": (0, fixture("vgs.json"), ""),
        "lvs ": (0, fixture("lvs.json"), ""),
        "efibootmgr -v": (0, fixture("efibootmgr-v.txt"), ""),
        "debconf-show grub-pc": (0, "", ""),
        "uname -a": (0, "Linux fileserver 6.1.0-13-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 x86_64 GNU/Linux\n",
                     ""),
        "dpkg --get-selections": (0, "adduser\t\t\t\t\tinstall\nmdadm\t\t\t\t\t\tinstall\n", ""),
    })


def test_collect_everything_present(tmp_path):
    runner = fileserver_runner()
    col = md.collect(runner=runner, which=lambda name: f"/usr/sbin/{name}", root=str(fake_root(tmp_path, efi=True)))
    items = col.items
    assert col.disks == ["loop1", "sda", "nvme0n1"]
    assert items["sfdisk/sda"].status == md.OK and items["sfdisk/sda"].command == ["sfdisk", "--dump", "/dev/sda"]
    assert items["sfdisk/nvme0n1"].status == md.NOT_PRESENT
    assert [a["device"] for a in items["mdadm"].data] == ["/dev/md0", "/dev/md/1"]
    assert [lv["lv_name"] for lv in items["lvs"].data] == ["root", "swap", "home", "data"]
    assert items["lvs"].command[-2:] == ["-o", md.LVS_FIELDS] and "-a" not in items["pvs"].command
    assert col.boot["firmware"] == "efi" and col.boot["efi"]["current"] == "0001"
    assert items["grub-pc"].status == md.NOT_PRESENT and col.boot["grub_install_devices"] == []
    assert items["os-release"].source == "/usr/lib/os-release" and items["os-release"].data == {"ID": "debian"}
    assert items["hostname"].data == "fileserver" and items["packages"].data == 2
    assert items["crypttab"].data == [{"target": "sda3_crypt", "source": "UUID=8d1f2e3c-4b5a-6978", "key_file": "none",
                                       "options": "luks,discard"}]
    assert col.failed == []
    assert all(call[0].startswith("/usr/sbin/") for call in runner.calls)  # resolved, never through a shell


def test_collect_tools_missing_and_nothing_present(tmp_path):
    runner = Replay({
        "lsblk --json": (0, '{"blockdevices": []}', ""),
        "blkid -c /dev/null": (2, "", ""),
        "df -P -T -l": (0, "Filesystem Type 1024-blocks Used Available Capacity Mounted on\n", ""),
        "debconf-show grub-pc": (0, fixture("debconf-show-grub-pc.txt"), ""),
        "uname -a": (0, "Linux x\n", ""),
        "rpm -qa": (0, "bash-5.1.8-6.el9.x86_64\n", ""),
    })
    present = {"lsblk", "blkid", "df", "debconf-show", "uname", "rpm"}
    col = md.collect(runner=runner, which=lambda n: f"/usr/bin/{n}" if n in present else None,
                     root=str(tmp_path))
    items = col.items
    for name in ("mdadm", "pvs", "vgs", "lvs"):
        assert items[name].status == md.TOOL_MISSING, name
    for name in ("fstab", "crypttab", "mounts", "swaps", "mdstat", "os-release", "efibootmgr", "blkid"):
        assert items[name].status == md.NOT_PRESENT, name
    assert col.boot == {"firmware": "bios", "efi": None,
                        "grub_install_devices": md.grub_devices(md.parse_debconf_show(
                            fixture("debconf-show-grub-pc.txt")))}
    assert items["packages"].command == ["rpm", "-qa"] and col.failed == []


def test_collect_failures_are_recorded_not_raised(tmp_path):
    def runner(argv, **kwargs):
        if argv[0].endswith("lsblk"):
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        if argv[0].endswith("pvs"):
            return subprocess.CompletedProcess(argv, 0, "  WARNING: not json\n", "")
        return subprocess.CompletedProcess(argv, 5, "", "boom\n")

    col = md.collect(runner=runner, which=lambda n: f"/bin/{n}", root=str(tmp_path))
    assert col.items["lsblk"].status == md.FAILED and "timed out" in col.items["lsblk"].stderr
    assert col.items["pvs"].status == md.FAILED and "cannot parse output" in col.items["pvs"].stderr
    assert col.items["uname"].rc == 5 and col.disks == []
    assert "lsblk" in col.failed and "uname" in col.failed


# --------------------------------------------------------------------------------------------- layout
def collected(tmp_path) -> dict:
    return md.collect(runner=fileserver_runner(), which=lambda name: f"/usr/sbin/{name}",
                      root=str(fake_root(tmp_path, efi=True)), now=0).to_dict()


def test_write_metadata_dir_layout_and_modes(tmp_path):
    data = collected(tmp_path)
    dest = tmp_path / "image" / "metadata"
    dest.parent.mkdir()
    written = layout.write_metadata_dir(data, str(dest))
    assert written == sorted([
        "sfdisk/sda.dump", "sfdisk/loop1.dump", "lsblk.json", "blkid.txt", "df.txt", "fstab", "crypttab", "mounts",
        "swaps",
        "mdstat", "mdadm.conf", "efibootmgr.txt", "os-release", "uname.txt", "hostname", "packages.txt",
        "lvm.json", "boot.json", "metadata.json"])
    assert (dest / "sfdisk" / "sda.dump").read_text() == fixture("sfdisk-dump-gpt.txt")  # byte for byte
    assert json.loads((dest / "metadata.json").read_text()) == data
    assert json.loads((dest / "lvm.json").read_text())["vgs"][1]["vg_name"] == "vgcrypt"
    assert json.loads((dest / "boot.json").read_text())["firmware"] == "efi"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700 and stat.S_IMODE((dest / "sfdisk").stat().st_mode) == 0o700
    assert {stat.S_IMODE((dest / f).stat().st_mode) for f in written} == {0o600}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["metadata"]  # no temp dir left


def test_write_metadata_dir_replaces_whole_set(tmp_path):
    data = collected(tmp_path)
    dest = tmp_path / "metadata"
    dest.mkdir()
    (dest / "stale.txt").write_text("from an older run\n")
    layout.write_metadata_dir(data, str(dest))
    assert not (dest / "stale.txt").exists() and (dest / "metadata.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata", "root"]


def test_write_metadata_dir_failure_keeps_old_set(tmp_path, monkeypatch):
    data = collected(tmp_path)
    dest = tmp_path / "metadata"
    dest.mkdir()
    (dest / "metadata.json").write_text("old\n")
    real_rename = os.rename

    def failing_rename(src, dst):
        if ".new-" in str(src):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(layout.os, "rename", failing_rename)  # a full disk at the last step cannot be made on demand
    with pytest.raises(layout.MetadataError, match="No space left on device"):
        layout.write_metadata_dir(data, str(dest))
    assert (dest / "metadata.json").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata", "root"]


def test_write_metadata_dir_missing_parent(tmp_path):
    with pytest.raises(layout.MetadataError, match=r"parent directory .*/nope does not exist"):
        layout.write_metadata_dir({"items": {}}, str(tmp_path / "nope" / "metadata"))


def test_failed_items_have_no_file_and_unsafe_disk_names_are_ignored():
    data = {"items": {"uname": {"status": md.FAILED, "output": "partial"},
                      "sfdisk/../x": {"status": md.OK, "output": "label: gpt\n"}}, "boot": {}}
    assert sorted(layout.render_files(data)) == ["boot.json", "metadata.json"]


def test_main_prints_json_and_exit_code(monkeypatch, capsys, tmp_path):
    col = md.collect(runner=fileserver_runner(), which=lambda name: f"/usr/sbin/{name}",
                     root=str(fake_root(tmp_path, efi=False)))
    monkeypatch.setattr(md, "collect", lambda: col)
    assert md.main(["--json"]) == md.EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed["boot"]["firmware"] == "bios"
    assert layout.parse_collection(json.dumps(printed).encode()) == printed  # what the engine accepts
    col.items["uname"].status = md.FAILED
    assert md.main([]) == md.EXIT_ITEM_FAILED
    assert "uname failed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        md.main(["--write", str(tmp_path / "out")])  # the program writes nothing: the engine does
    assert exc.value.code == md.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        md.main(["--bogus"])
    assert exc.value.code == md.EXIT_USAGE


def test_collector_and_layout_share_one_vocabulary():
    # dervish_metadata.py runs alone on the client, so it cannot import the engine's layout module
    assert (md.FORMAT_VERSION, md.OK, md.FAILED, md.TOOL_MISSING, md.NOT_PRESENT) == (
        layout.FORMAT_VERSION, layout.OK, layout.FAILED, layout.TOOL_MISSING, layout.NOT_PRESENT)
    assert "ansible_collections" not in Path(md.__file__).read_text() and "dervish_engine import" not in \
        Path(md.__file__).read_text()
