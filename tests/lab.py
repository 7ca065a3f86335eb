"""Drive lab/labctl from tests: start a lab, run commands on its hosts, stop it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LABCTL = REPO_ROOT / "lab" / "labctl"
DEFAULT_HOSTS = ("backup", "laptop1", "laptop2", "firewall")


@dataclass
class Lab:
    """One lab: its state directory, address range and host names (the first is the server)."""

    dir: Path
    net: str
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "LAB_DIR": str(self.dir), "LAB_NET": self.net, "LAB_HOSTS": " ".join(self.hosts)}

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def server(self) -> str:
        return self.hosts[0]

    def disk(self, host: str) -> str | None:
        """The loop device of a client's own disk (labctl's LAB_DISK_HOSTS, laptop1 by default), or None."""
        record = self.dir / f"{host}-disk.loop"
        return record.read_text().strip() if record.is_file() else None

    def ip(self, host: str) -> str:
        return f"{self.net}.{self.hosts.index(host) + 1}"

    def labctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LABCTL), *args], env=self.env, text=True, capture_output=True, check=check, timeout=120
        )

    def is_up(self) -> bool:
        states = {}
        for line in self.labctl("status", check=False).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                states[parts[0]] = parts[2]
        return all(states.get(host) == "running" for host in self.hosts)

    def up(self) -> None:
        result = self.labctl("up", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"labctl up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def down(self) -> None:
        self.labctl("down")

    def ssh(self, host: str, command: str, check: bool = True, input: str | None = None,
            timeout: int = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a lab host as root."""
        result = subprocess.run(
            ["ssh", "-F", str(self.ssh_config), host, command],
            text=True, capture_output=True, input=input, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ssh {host} {command!r} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def attach_disk(self, name: str, size: str) -> str:
        """A new blank disk for the running server (labctl disk-attach); returns its device there."""
        return self.labctl("disk-attach", self.server, name, size).stdout.strip().splitlines()[-1]

    def detach_disk(self, name: str) -> None:
        """Take a disk of attach_disk away again (its nodes on the server, its loop device, its image)."""
        self.labctl("disk-detach", name)

    @contextmanager
    def drive_absent(self) -> Iterator[None]:
        """The backup drive unplugged from the server: its device nodes are gone there until the end."""
        loop = (self.dir / "drive.loop").read_text().strip()
        nodes = self.ssh(self.server, f"stat -c '%n %t %T' {loop} {loop}p1 {loop}p2").stdout.splitlines()
        self.ssh(self.server, f"rm {loop} {loop}p1 {loop}p2")
        try:
            yield
        finally:
            for line in nodes:
                name, major, minor = line.split()
                self.ssh(self.server, f"mknod -m 660 {name} b $((0x{major})) $((0x{minor}))")
