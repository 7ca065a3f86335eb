"""Issue 8: every nightly image carries the client's restore metadata, for real.

site.yml provisions the lab (clients get dervish-metadata and a gate that allows it, the server's vaults
``metadata: dervish-metadata --json``), then the nightly wrapper ``dervish-backup`` runs twice on the
server. Every image has ``metadata/`` in the documented layout; laptop1, the lab client with a disk of its
own, has a real partition table saved, which recreates the same table on a blank loop disk; the second
image hard-links the unchanged files of the first.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ansible_collections.dervish.backup.plugins.module_utils.dervish_engine import metadata_layout as layout
from lab import Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
WRAPPER = "/usr/local/sbin/dervish-backup"
BANK = "/backup/dervish"
VAULTS = {"laptop1-etc": "laptop1", "laptop1-home": "laptop1", "laptop2-etc": "laptop2", "firewall-etc": "firewall"}


@pytest.fixture(scope="module")
def nightly(lab: Lab):
    """The lab provisioned (twice: the second run changes nothing), then two nightly runs; yields the
    runs, with the drive mounted, and sets NEW[vault] to the images these runs made."""
    first = run_playbook(lab, "site.yml")
    assert first.rc == 0, first.stdout[-6000:]
    second = run_playbook(lab, "site.yml")
    assert second.rc == 0 and second.changed_count == 0, (second.changed, second.stdout[-3000:])
    # every vault has a file to hard-link in its second image, also on a fresh lab (laptop1's /home)
    lab.ssh("laptop1", "mkdir -p /home/metatest && echo same > /home/metatest/same.txt")
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    before = {vault: all_images(lab, vault) for vault in VAULTS}
    lab.ssh(lab.server, "umount /backup")
    runs = [lab.ssh(lab.server, WRAPPER, check=False, timeout=900) for _run in range(2)]
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        for vault in VAULTS:
            NEW[vault] = [name for name in all_images(lab, vault) if name not in before[vault]]
        yield runs
    finally:
        lab.ssh(lab.server, "umount /backup")


NEW: dict[str, list[str]] = {}


def all_images(lab: Lab, vault: str) -> list[str]:
    """The vault's images (directories with a summary), oldest first; none before its first image."""
    listing = lab.ssh(lab.server, f"cd {BANK}/{vault} 2>/dev/null && ls -d */summary || true").stdout.split()
    return sorted(name.split("/")[0] for name in listing)


def images(lab: Lab, vault: str) -> list[str]:
    return NEW[vault]


def absent_devices(lab: Lab, client: str, disks: list[str]) -> set[str]:
    """The disks the client's lsblk lists (from the machine's /sys) that have no device node in it."""
    found = lab.ssh(client, " ".join(["for d in", *disks, "; do test -b /dev/$d || echo $d; done"])).stdout
    return set(found.split())


def test_site_allows_exactly_the_metadata_command(lab: Lab, nightly) -> None:
    for client in ("laptop1", "laptop2", "firewall"):
        conf = lab.ssh(client, "cat /etc/dervish/gate.conf").stdout
        assert "command dervish-metadata /usr/local/sbin/dervish-metadata\narg dervish-metadata --json\n" in conf
        assert lab.ssh(client, "head -1 /usr/local/sbin/dervish-metadata").stdout == "#!/usr/bin/python3\n"
    for vault in VAULTS:
        conf = lab.ssh(lab.server, f"cat /etc/dervish/vaults/{vault}.conf").stdout
        assert "\nmetadata: dervish-metadata --json\n" in conf, conf


def test_the_nightly_runs_succeed(lab: Lab, nightly) -> None:
    for run in nightly:
        assert run.returncode == 0, run.stdout + run.stderr
    for vault in VAULTS:
        assert len(images(lab, vault)) == 2, vault


def test_every_image_has_metadata_in_the_documented_layout(lab: Lab, nightly) -> None:
    for vault, client in VAULTS.items():
        for image in images(lab, vault):
            where = f"{BANK}/{vault}/{image}"
            summary = lab.ssh(lab.server, f"cat {where}/summary").stdout
            assert "Status: success" in summary, (where, summary)
            collected = json.loads(lab.ssh(lab.server, f"cat {where}/metadata/metadata.json").stdout)
            listed = lab.ssh(lab.server, f"cd {where}/metadata && find . -type f | sed 's|^./||'").stdout.split()
            assert sorted(listed) == sorted(layout.render_files(collected)), where
            assert lab.ssh(lab.server, f"stat -c %a {where}/metadata").stdout.strip() == "700"
            assert lab.ssh(lab.server, f"cat {where}/metadata/hostname").stdout.strip() == client
            for name in ("lsblk.json", "fstab", "mounts", "os-release", "uname.txt", "packages.txt", "df.txt"):
                assert name in listed, (where, name)
            # every item collected or skipped: the disks lsblk lists from the machine's /sys but whose device
            # node this lab host lacks are "skipped: not present", not failures
            assert layout.failed_items(collected) == [], where
            assert "Metadata: ok\n" in summary, (where, summary)
            absent = absent_devices(lab, client, collected["disks"])
            for disk in collected["disks"]:
                status = collected["items"][f"sfdisk/{disk}"]["status"]
                assert status == (layout.NOT_PRESENT if disk in absent else layout.OK), (where, disk, status)


def test_status_says_every_vault_has_metadata(lab: Lab, nightly) -> None:
    status = json.loads(lab.ssh(lab.server, "dervish status --json").stdout)
    rows = {row["vault"]: row for row in status["vaults"]}
    for vault in VAULTS:
        assert rows[vault]["metadata"] is True, rows[vault]


def normalised_dump(text: str, device: str) -> str:
    """``sfdisk --dump`` without the device name: no ``device:`` line, partitions named /dev/DISKpN."""
    return "\n".join(line.replace(device, "/dev/DISK") for line in text.splitlines() if not line.startswith("device:"))


def test_laptop1s_saved_dump_recreates_its_partition_table(lab: Lab, nightly, tmp_path: Path) -> None:
    loop = lab.disk("laptop1")
    disk = Path(loop).name
    original = lab.ssh("laptop1", f"sfdisk --dump {loop}").stdout
    for image in images(lab, "laptop1-etc"):
        where = f"{BANK}/laptop1-etc/{image}/metadata"
        dump = lab.ssh(lab.server, f"cat {where}/sfdisk/{disk}.dump").stdout
        assert "label: gpt" in dump and 'name="home"' in dump
        blkid = lab.ssh(lab.server, f"cat {where}/blkid.txt").stdout
        assert 'LABEL="laptop1-root"' in blkid and 'LABEL="laptop1-home"' in blkid

    blank = tmp_path / "blank.img"
    with open(blank, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    target = subprocess.run(["losetup", "-f", "--show", str(blank)], text=True, capture_output=True,
                            check=True).stdout.strip()
    try:
        restore = subprocess.run(["sfdisk", "--no-reread", target], input=dump, text=True, capture_output=True,
                                 check=False)
        assert restore.returncode == 0, restore.stderr
        after = subprocess.run(["sfdisk", "--dump", target], text=True, capture_output=True, check=True).stdout
        assert normalised_dump(after, target) == normalised_dump(original, loop)
    finally:
        back = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", target], text=True, capture_output=True,
                              check=False).stdout.strip()
        if back == str(blank):  # only the device we attached
            subprocess.run(["losetup", "-d", target], check=False)


HARDLINK_CHECK = r"""
import os, sys
first, second = sys.argv[1], sys.argv[2]
linked = copied = 0
for top, dirs, files in os.walk(second):
    for name in files:
        path = os.path.join(top, name)
        old = os.path.join(first, os.path.relpath(path, second))
        a, b = os.lstat(path), os.lstat(old) if os.path.lexists(old) else None
        if b is None or not os.path.isfile(path) or os.path.islink(path):
            continue
        if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
            if a.st_ino == b.st_ino:
                linked += 1
            else:
                copied += 1
                print("copied", path)
print("linked", linked, "copied", copied)
"""


def test_the_second_image_hard_links_unchanged_files(lab: Lab, nightly) -> None:
    for vault in VAULTS:
        first, second = images(lab, vault)
        out = lab.ssh(lab.server, f"python3 - {BANK}/{vault}/{first}/tree {BANK}/{vault}/{second}/tree",
                      input=HARDLINK_CHECK).stdout
        last = out.splitlines()[-1].split()
        assert int(last[1]) > 0 and last[3] == "0", (vault, out[-2000:])
