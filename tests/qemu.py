"""Boot a disk image (or block device) headless under qemu and wait for a line on its serial console.

The boot proofs use it: the test system disk (lab/bootdisk.sh), a disk rebuilt by a bare-metal restore,
a backup drive's rescue partition. qemu emulates in software when there is no KVM; a boot of the test
disk then takes about 25 s on a quiet machine, so the timeouts are generous.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

QEMU = "qemu-system-x86_64"
OVMF = Path("/usr/share/ovmf/OVMF.fd")   # Debian's ovmf: UEFI firmware for qemu's PC
BOOTDISK = Path(__file__).resolve().parent.parent / "lab" / "bootdisk.sh"


@dataclass
class Boot:
    """How a boot went: the marker line if it appeared, the seconds until then, the whole console."""

    marker_line: str | None
    seconds: float
    console: str

    def __bool__(self) -> bool:
        return self.marker_line is not None


def boot_marker() -> str:
    """The marker prefix the test system disk's dervish-boot-marker.service prints on ttyS0."""
    return subprocess.run([str(BOOTDISK), "marker"], text=True, capture_output=True, check=True).stdout.strip()


def boot_disk(image_or_device: str | os.PathLike[str], marker: str, timeout: float = 300,
              console_log: str | os.PathLike[str] | None = None, memory_mib: int = 512,
              snapshot: bool = False, efi: bool = False) -> Boot:
    """Boot IMAGE_OR_DEVICE (raw) as the first disk of a headless BIOS PC (EFI=True: a UEFI PC, with
    OVMF as its firmware); true once MARKER shows.

    The serial console goes to CONSOLE_LOG (a temporary file by default); qemu is killed as soon as
    the marker appears or TIMEOUT seconds have passed. SNAPSHOT=True keeps the disk unchanged.
    """
    if shutil.which(QEMU) is None:
        raise RuntimeError(f"{QEMU} is missing (run: make system-packages)")
    disk = Path(image_or_device)
    if not disk.exists():
        raise FileNotFoundError(f"boot_disk: {disk} does not exist")
    with tempfile.TemporaryDirectory(prefix="dervish-qemu-") as tmp:
        log = Path(console_log) if console_log else Path(tmp) / "console.log"
        log.write_bytes(b"")
        # software emulation by default: nested KVM on these machines crawls through BIOS disk reads
        accel = os.environ.get("DERVISH_QEMU_ACCEL", "tcg")
        drive = f"file={disk},format=raw,if=virtio,cache=unsafe" + (",snapshot=on" if snapshot else "")
        argv = [QEMU, "-machine", f"pc,accel={accel}", "-m", str(memory_mib), "-display", "none",
                "-monitor", "none", "-serial", f"file:{log}", "-drive", drive,
                "-nic", "none", "-no-reboot"]
        if efi:
            if not OVMF.is_file():
                raise RuntimeError(f"{OVMF} is missing (run: make system-packages)")
            argv += ["-bios", str(OVMF)]
        start = time.monotonic()
        # qemu's messages go to a file: a full pipe nobody reads would stall the guest
        with open(Path(tmp) / "qemu.err", "w+b") as errors:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
            found = None
            try:
                while time.monotonic() - start < timeout:
                    found = _marker_line(log, marker)
                    if found or proc.poll() is not None:
                        found = found or _marker_line(log, marker)
                        break
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            errors.seek(0)
            stderr = errors.read().decode(errors="replace")
        console = log.read_text(errors="replace")
        if stderr.strip():
            console += f"\n[qemu stderr]\n{stderr}"
        return Boot(found, time.monotonic() - start, console)


def _marker_line(log: Path, marker: str) -> str | None:
    for line in log.read_text(errors="replace").splitlines():
        if marker in line:
            return line.strip()
    return None
