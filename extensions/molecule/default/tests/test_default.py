"""testinfra checks of the lab hosts molecule created."""

from __future__ import annotations


def test_host_is_the_lab_host_it_claims(host) -> None:
    name = host.backend.get_hostname()
    assert host.run("hostname").stdout.strip() == name
    assert host.file("/etc/lab-host").content_string.split()[0] == name


def test_sshd_runs_inside_the_host(host) -> None:
    assert host.process.filter(comm="sshd")


def test_only_the_server_has_a_block_device(host) -> None:
    devices = host.run("find /dev -type b").stdout.split()
    if host.backend.get_hostname() == "backup":
        assert len(devices) == 3 and all(d.startswith("/dev/loop") for d in devices)
        assert host.run("blkid -L BACKUPDRIVE").rc == 0
    else:
        assert devices == []
