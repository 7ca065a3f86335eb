"""The lab is real: separate hosts with their own /etc, a backup drive only on the server,
no machine disks anywhere, and a teardown that leaves nothing behind."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from lab import Lab

pytestmark = pytest.mark.lab


def test_every_host_answers_with_its_own_hostname_and_key(lab: Lab) -> None:
    keys = set()
    for host in lab.hosts:
        assert lab.ssh(host, "hostname").stdout.strip() == host
        keys.add(lab.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1])
    assert len(keys) == len(lab.hosts), "every host must have its own host key"
    known = (lab.dir / "known_hosts").read_text()
    for host in lab.hosts:
        assert f"{host},{lab.ip(host)} ssh-ed25519" in known


def test_etc_is_private_to_each_host(lab: Lab) -> None:
    marker = f"/etc/dervish-isolation-{uuid.uuid4().hex}"
    lab.ssh("laptop1", f"echo laptop1 > {marker}")
    try:
        assert lab.ssh("laptop1", f"cat {marker}").stdout.strip() == "laptop1"
        for host in lab.hosts:
            if host != "laptop1":
                assert lab.ssh(host, f"test -e {marker}", check=False).returncode == 1, host
        assert not Path(marker).exists(), "a host's /etc write leaked to the machine"
    finally:
        lab.ssh("laptop1", f"rm -f {marker}")


def test_clients_see_no_block_devices_but_their_own_disk(lab: Lab) -> None:
    for host in lab.hosts[1:]:
        loop = lab.disk(host)
        own = sorted([loop, *(f"{loop}p{i}" for i in (1, 2, 3))]) if loop else []
        assert sorted(lab.ssh(host, "find /dev -type b").stdout.split()) == own, host
        # and cannot create one to reach a machine disk: /dev is a private tmpfs, /sys read-only
        assert lab.ssh(host, "touch /sys/x", check=False).returncode != 0


def test_backup_sees_only_its_drive_and_mounts_it_privately(lab: Lab) -> None:
    loop = (lab.dir / "drive.loop").read_text().strip()
    devices = sorted(lab.ssh(lab.server, "find /dev -type b").stdout.split())
    assert devices == sorted([loop, f"{loop}p1", f"{loop}p2"])
    assert lab.ssh(lab.server, "blkid -L BACKUPDRIVE").stdout.strip() == f"{loop}p2"
    lab.ssh(lab.server, "mkdir -p /backup && mount LABEL=BACKUPDRIVE /backup")
    try:
        assert lab.ssh(lab.server, "cat /backup/DISKLABEL").stdout.strip() == "lab-drive-1"
        assert lab.ssh(lab.server, "stat -c %a /backup").stdout.strip() == "700"
        machine_mounts = Path("/proc/self/mountinfo").read_text()
        assert f"{loop}p2" not in machine_mounts, "the drive's mount leaked to the machine"
        assert "/backup" not in lab.ssh("laptop1", "cat /proc/self/mountinfo").stdout
    finally:
        lab.ssh(lab.server, "umount /backup")


def test_lab_state_and_keys_are_hidden_inside_hosts(lab: Lab) -> None:
    # hidden under a private tmpfs, or (a lab dir below /tmp) not there at all
    assert lab.ssh("laptop1", f"ls -A {lab.dir} 2>/dev/null || true").stdout == ""
    assert lab.ssh("laptop1", f"test -e {lab.dir}/id_lab", check=False).returncode == 1


def test_up_is_idempotent(lab: Lab) -> None:
    pids = {host: (lab.dir / host / "init.pid").read_text() for host in lab.hosts}
    result = lab.labctl("up")
    assert result.stdout.count("already running") == len(lab.hosts)
    assert pids == {host: (lab.dir / host / "init.pid").read_text() for host in lab.hosts}


def _listeners(prefix: str) -> str:
    out = subprocess.run(["ss", "-Hltn"], text=True, capture_output=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if f" {prefix}." in line)


def _all_mounts() -> str:
    """Every mount table of every process (namespaces included) that can still be read."""
    tables = []
    for path in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            tables.append(path.read_text())
        except OSError:  # the process ended while we looked
            continue
    return "\n".join(tables)


@pytest.mark.slow
def test_down_after_up_leaves_nothing_behind(tmp_path: Path, lab: Lab) -> None:
    """A second lab on other addresses runs beside the session's lab, then goes away entirely."""
    other = Lab(dir=tmp_path / "lab", net="127.0.14", hosts=("srv", "cl1"))
    other.up()
    try:
        assert other.ssh("srv", "hostname").stdout.strip() == "srv"
        assert lab.ssh("laptop1", "hostname").stdout.strip() == "laptop1"  # both labs at once
        unshare_pids = [(other.dir / h / "unshare.pid").read_text().strip() for h in other.hosts]
        init_pids = [(other.dir / h / "init.pid").read_text().strip() for h in other.hosts]
        loop = (other.dir / "drive.loop").read_text().strip()
        image = str(other.dir / "drive.img")
        other.ssh("srv", "mkdir -p /backup && mount LABEL=BACKUPDRIVE /backup")
    finally:
        other.down()
    for pid in unshare_pids + init_pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z", f"lab process {pid} still running"
    losetup = subprocess.run(["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], text=True, capture_output=True,
                             check=False).stdout
    assert image not in losetup and not Path(f"{loop}p2").exists()
    assert _listeners("127.0.14") == ""
    assert not other.dir.exists()
    assert str(other.dir) not in _all_mounts()
    assert other.labctl("down").returncode == 0  # safe to run twice
