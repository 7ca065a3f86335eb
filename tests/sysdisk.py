"""A lab client that runs from a bootable system disk (labctl's LAB_SYSDISK_HOSTS, lab/bootdisk.sh's
image): the lab with it, and an inventory that backs up its three filesystems. Used by the boot proof
(tests/integration/boot/test_sysdisk_host.py) and the bare-metal benchmark (benchmarks/bench_bare_metal.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from qemu import BOOTDISK

from lab import Lab
from playbooks import lab_inventory

HOST = "vm1"
VAULTS = {"vm1-root": "/", "vm1-boot": "/boot", "vm1-data": "/data"}


def sysdisk_lab(lab: Lab) -> Lab:
    """LAB with vm1 added (started if it is not running): the other hosts keep running as they are."""
    image = subprocess.run([str(BOOTDISK), "path"], text=True, capture_output=True, timeout=1200, check=False)
    if image.returncode != 0:
        raise RuntimeError(f"lab/bootdisk.sh path failed: {image.stderr}")
    hosts = lab.hosts if HOST in lab.hosts else (*lab.hosts, HOST)
    with_vm = Lab(dir=lab.dir, net=lab.net, hosts=hosts)
    with_vm.env.update(LAB_SYSDISK_HOSTS=HOST, LAB_SYSDISK_IMAGE=image.stdout.strip())
    with_vm.up()
    return with_vm


def sysdisk_inventory(tmp_path: Path) -> Path:
    """The lab's inventory with vm1 as a client whose vaults are its three filesystems."""
    inventory = lab_inventory(tmp_path)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["backup_clients"]["hosts"][HOST] = None
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "host_vars" / f"{HOST}.yml").write_text(
        "---\nbackup_client_filesystems: [/, /boot, /data]\n")
    return inventory
