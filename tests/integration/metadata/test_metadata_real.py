"""dervish_metadata on a real loop disk: partitions, filesystems and swap made with the real tools, then
collected; the saved sfdisk dump must recreate the same table on a second blank loop disk.

Loop devices are global on this machine: each test attaches its own images with ``losetup -f --show`` and
detaches exactly those devices by name (after checking they still back our image) in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from ansible_collections.dervish.backup.plugins.module_utils import dervish_metadata as md
from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import metadata_layout as layout

REPO_ROOT = Path(__file__).resolve().parents[3]
PROGRAM = REPO_ROOT / "plugins" / "module_utils" / "dervish_metadata.py"
TOOLS = ("losetup", "partx", "sfdisk", "mkfs.ext4", "mkswap", "blkid", "lsblk")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for loop devices"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason=f"needs {', '.join(TOOLS)}"),
]

SIZE = 96 * 1024 * 1024
# gpt: a small BIOS boot partition (no filesystem), ext4, swap
TABLE = "label: gpt\n,4MiB,21686148-6449-6E6F-744E-656564454649\n,48MiB,L\n,,S\n"


def run(*argv: str, input: str | None = None) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


@contextmanager
def loop_disk(image: Path):
    """Attach ``image`` to a free loop device and add its partitions; always detach that device again."""
    loop = run("losetup", "-f", "--show", str(image)).strip()
    try:
        subprocess.run(["partx", "-a", loop], capture_output=True, timeout=30, check=False)  # no table yet is fine
        yield loop
    finally:
        back = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", loop], capture_output=True, text=True,
                              timeout=30, check=False).stdout.strip()
        if back == str(image):  # never touch a device someone else attached meanwhile
            subprocess.run(["partx", "-d", loop], capture_output=True, timeout=30, check=False)
            subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=30, check=False)


def blank(path: Path) -> Path:
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
    return path


def normalised_dump(loop: str) -> str:
    """``sfdisk --dump`` with the device name replaced, so two disks' tables compare."""
    return run("sfdisk", "--dump", loop).replace(loop, "/dev/DISK")


@pytest.fixture
def source_disk(tmp_path):
    image = blank(tmp_path / "source.img")
    run("sfdisk", "-q", str(image), input=TABLE)
    with loop_disk(image) as loop:
        assert Path(f"{loop}p3").is_block_device(), "partx did not add the partitions"
        run("mkfs.ext4", "-q", "-F", "-L", "dervish-data", f"{loop}p2")
        run("mkswap", "-L", "dervish-swap", f"{loop}p3")
        yield loop


def test_collected_dump_recreates_the_table(tmp_path, source_disk):
    loop = source_disk
    disk = os.path.basename(loop)
    col = md.collect()
    assert disk in col.disks
    item = col.items[f"sfdisk/{disk}"]
    assert item.status == md.OK and item.command == ["sfdisk", "--dump", loop]

    dest = tmp_path / "image" / "metadata"
    dest.parent.mkdir()
    (dest.parent / "tree").mkdir()
    layout.write_metadata_dir(col.to_dict(), str(dest))
    dump = dest / "sfdisk" / f"{disk}.dump"
    assert dump.read_text() == item.output

    # the dump as saved, fed unchanged to sfdisk, gives a second blank disk the same table
    with loop_disk(blank(tmp_path / "target.img")) as target:
        proc = subprocess.run(["sfdisk", "--no-reread", target], stdin=dump.open(), capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert normalised_dump(target) == normalised_dump(loop)
        assert "label-id:" in normalised_dump(target) and "uuid=" in normalised_dump(target)


def test_uuids_and_labels_are_collected(tmp_path, source_disk):
    loop = source_disk
    data_uuid = run("blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", f"{loop}p2").strip()
    swap_uuid = run("blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", f"{loop}p3").strip()
    part_uuid = run("blkid", "-c", "/dev/null", "-o", "value", "-s", "PARTUUID", f"{loop}p1").strip()
    assert data_uuid and swap_uuid and part_uuid

    col = md.collect()
    blkid = col.items["blkid"].data
    assert blkid[f"{loop}p2"]["LABEL"] == "dervish-data" and blkid[f"{loop}p2"]["UUID"] == data_uuid
    assert blkid[f"{loop}p3"]["TYPE"] == "swap" and blkid[f"{loop}p3"]["UUID"] == swap_uuid

    devices = {dev["name"]: dev for dev in md.flatten_lsblk(col.items["lsblk"].data)}
    name = os.path.basename(loop)
    assert devices[f"{name}p2"]["fstype"] == "ext4" and devices[f"{name}p2"]["label"] == "dervish-data"
    assert devices[f"{name}p2"]["uuid"] == data_uuid
    assert devices[f"{name}p3"]["fstype"] == "swap" and devices[f"{name}p3"]["uuid"] == swap_uuid
    assert devices[f"{name}p1"]["partuuid"] == part_uuid and devices[f"{name}p1"]["fstype"] is None
    assert devices[f"{name}p2"]["size"] == 48 * 1024 * 1024

    dest = tmp_path / "metadata"
    layout.write_metadata_dir(col.to_dict(), str(dest))
    assert data_uuid in (dest / "blkid.txt").read_text()
    saved = json.loads((dest / "metadata.json").read_text())["items"]
    assert saved["blkid"]["data"][f"{loop}p2"]["UUID"] == data_uuid
    assert data_uuid in json.dumps(saved["lsblk"]["data"])
    assert json.loads((dest / "lsblk.json").read_text()) == json.loads(col.items["lsblk"].output)  # lsblk's own


def test_program_prints_the_collection(tmp_path, source_disk):
    """The file the role deploys as dervish-metadata, run as a program."""
    proc = subprocess.run([sys.executable, str(PROGRAM), "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (md.EXIT_OK, md.EXIT_ITEM_FAILED), proc.stderr
    data = json.loads(proc.stdout)
    disk = os.path.basename(source_disk)
    assert disk in data["disks"] and data["items"][f"sfdisk/{disk}"]["status"] == md.OK
    # as the engine does with a client's output
    layout.write_metadata_dir(layout.parse_collection(proc.stdout.encode()), str(tmp_path / "metadata"))
    assert (tmp_path / "metadata" / "sfdisk" / f"{disk}.dump").is_file()
    if proc.returncode == md.EXIT_ITEM_FAILED:  # e.g. a disk this container may not open
        failed = [n for n, i in data["items"].items() if i["status"] == md.FAILED]
        assert failed and all(f"{name} failed" in proc.stderr for name in failed)
    help_text = subprocess.run([sys.executable, str(PROGRAM), "--help"], capture_output=True, text=True,
                               timeout=60, check=True).stdout
    assert "Exit codes" in help_text


def test_module_through_ansible_on_localhost(tmp_path, source_disk):
    """dervish.backup.host_metadata run by ansible itself (ansible-runner, local connection): check mode writes
    nothing, a real run writes the layout of the same disks it returns."""
    import ansible_runner

    dest = tmp_path / "metadata"

    def ansible(check: bool) -> dict:
        with tempfile.TemporaryDirectory(prefix="dervish-runner-") as private_dir:
            runner = ansible_runner.run(
                private_data_dir=private_dir, project_dir=str(REPO_ROOT), host_pattern="localhost",
                inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}",
                module="dervish.backup.host_metadata", module_args=f"dest={dest}",
                cmdline="--check --diff" if check else "--diff", quiet=True,
                envvars={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                         "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
            )
            results = [e["event_data"]["res"] for e in runner.events
                       if e.get("event") in ("runner_on_ok", "runner_on_failed")]
            assert runner.rc == 0 and len(results) == 1, runner.stdout.read()[-3000:]
            return results[0]

    result = ansible(check=True)
    assert result["changed"] is True and "metadata.json" in result["files"] and not dest.exists()
    result = ansible(check=False)
    disk = os.path.basename(source_disk)
    assert result["changed"] is True and disk in result["disks"]
    assert (dest / "sfdisk" / f"{disk}.dump").read_text() == result["metadata"]["items"][f"sfdisk/{disk}"]["output"]
    assert oct((dest / "metadata.json").stat().st_mode & 0o777) == "0o600"
