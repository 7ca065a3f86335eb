"""testinfra checks of the lab hosts molecule created and site.yml converged."""

from __future__ import annotations

import re

import pytest


@pytest.fixture()
def name(host) -> str:
    return host.backend.get_hostname()


def test_host_is_the_lab_host_it_claims(host, name) -> None:
    assert host.run("hostname").stdout.strip() == name
    assert host.file("/etc/lab-host").content_string.split()[0] == name


def test_only_the_server_and_laptop1_have_block_devices(host, name) -> None:
    devices = host.run("find /dev -type b").stdout.split()
    if name == "backup":
        assert len(devices) == 3 and all(d.startswith("/dev/loop") for d in devices)
        assert host.run("blkid -L BACKUPDRIVE").rc == 0
    elif name == "laptop1":  # its own disk (labctl LAB_DISK_HOSTS): a loop device and 3 partitions
        assert len(devices) == 4 and all(d.startswith("/dev/loop") for d in devices)
        assert host.run("blkid -L laptop1-home").rc == 0
    else:
        assert devices == []


def test_server_is_provisioned(host, name) -> None:
    if name != "backup":
        pytest.skip("server only")
    dervish = host.file("/usr/local/sbin/dervish")
    assert dervish.is_file and dervish.mode == 0o755
    for path, mode in (("/etc/dervish", 0o700), ("/etc/dervish/master.conf", 0o600),
                       ("/root/.ssh/dervish_backup_ed25519", 0o600), ("/usr/local/sbin/dervish-backup", 0o700)):
        assert host.file(path).mode == mode, path
        assert host.file(path).user == "root", path
    assert host.run("dervish --config /etc/dervish/master.conf check --master-only").rc == 0
    cron = host.file("/etc/cron.d/dervish").content_string
    assert re.search(r"^0 4 \* \* \* root .*/usr/local/sbin/dervish-backup", cron, re.M)
    for vault in ("laptop1-etc", "laptop1-home", "laptop2-etc", "firewall-etc"):
        assert host.file(f"/etc/dervish/vaults/{vault}.conf").contains("^client: ")
    assert "/backup" in host.file("/etc/updatedb.conf").content_string
    assert not host.mount_point("/backup").exists, "the drive stays unmounted between runs"


def test_client_is_provisioned(host, name) -> None:
    if name == "backup":
        pytest.skip("clients only")
    keys = host.file("/root/.ssh/authorized_keys").content_string
    assert re.search(r'^from="[0-9.]+",restrict,command="/usr/local/sbin/dervish-gate" ssh-ed25519 \S+ '
                     r"dervish-backup@backup$", keys, re.M), keys
    assert host.file("/usr/local/sbin/dervish-gate").mode == 0o755
    assert host.file("/etc/dervish/gate.conf").contains("^tree /etc$")
    assert host.file("/etc/logrotate.conf").contains("^dateext$")
    assert host.run("logrotate -d /etc/logrotate.conf").rc == 0
    assert re.search(r'^PRUNEPATHS=".*/backup', host.file("/etc/updatedb.conf").content_string, re.M)
