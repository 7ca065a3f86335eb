"""Shared set-up of the status and expire playbook tests: a provisioned lab and the server's drive."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lab import Lab
from playbooks import run_playbook

BANK = "/backup/dervish"
# Mounted by hand only for a test's own set-up and checks, and unmounted right after, so the playbooks
# always find the drive as the nightly run leaves it: unmounted.
MOUNT = 'install -d -m 700 /backup && { mountpoint -q /backup || mount "$(findfs LABEL=BACKUPDRIVE)" /backup; }'


@dataclass
class Drive:
    lab: Lab

    def run(self, command: str, check: bool = True):
        """Run COMMAND on the server with the drive mounted, then unmount it."""
        return self.lab.ssh(self.lab.server, f"{MOUNT} && {{ {command}\n}}; rc=$?; umount /backup; exit $rc",
                            check=check)

    def empty_banks(self) -> None:
        self.run(f"rm -rf {BANK}/* && /usr/local/sbin/dervish-backup --prepare-only >/dev/null")

    def images(self, vault: str) -> list[str]:
        return sorted(name for name in self.run(f"ls -1 {BANK}/{vault}").stdout.split() if name != "dirvish")

    def remove(self) -> list[str]:
        """Take the drive's device nodes away from the server (an unplugged drive); returns what restore needs."""
        loop = (self.lab.dir / "drive.loop").read_text().strip()
        nodes = self.lab.ssh(self.lab.server, f"stat -c '%n %t %T' {loop} {loop}p1 {loop}p2").stdout.splitlines()
        self.lab.ssh(self.lab.server, f"rm {loop} {loop}p1 {loop}p2")
        return nodes

    def restore(self, nodes: list[str]) -> None:
        for line in nodes:
            name, major, minor = line.split()
            self.lab.ssh(self.lab.server, f"mknod -m 660 {name} b $((0x{major})) $((0x{minor}))")

    def mounted(self) -> bool:
        return self.lab.ssh(self.lab.server, "mountpoint -q /backup", check=False).returncode == 0


@pytest.fixture(scope="module")
def provisioned(lab: Lab) -> Lab:
    # per file, not per session: another file run between two of these on the same test worker may
    # have started the lab afresh (test_site does); on a provisioned lab this run changes nothing
    run = run_playbook(lab, "site.yml")
    assert run.rc == 0, run.stdout[-6000:]
    return lab


@pytest.fixture(scope="module")
def drive(provisioned: Lab) -> Drive:
    return Drive(provisioned)
