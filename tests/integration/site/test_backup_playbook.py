"""playbooks/backup.yml in the lab (issue 8): per client, the snapshot action runs the module on the
client's server; images per vault, hard links against the previous image, --limit, a vault selection,
--check creating nothing, per-vault results, and the clear error of a task not run on the server."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
import pytest

from lab import REPO_ROOT, Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
VAULTS = {"laptop1": ("laptop1-etc", "laptop1-home"), "laptop2": ("laptop2-etc",), "firewall": ("firewall-etc",)}
ALL_VAULTS = tuple(vault for vaults in VAULTS.values() for vault in vaults)
SNAPSHOT_TASK = "Image the client's vaults on its backup server"
DRIVE = "LABEL=BACKUPDRIVE"


@dataclass
class Backup:
    rc: int
    stdout: str
    results: dict[str, dict] = field(default_factory=dict)  # host -> the snapshot task's result
    failed: dict[str, list[str]] = field(default_factory=dict)  # host -> failure messages


def backup(lab: Lab, playbook: str = "backup.yml", check: bool = False, limit: str | None = None,
           extravars: dict | None = None) -> Backup:
    """Run a playbook and keep each host's result of the snapshot task (what the module returned)."""
    with tempfile.TemporaryDirectory(prefix="dervish-runner-") as private_dir:
        runner = ansible_runner.run(
            private_data_dir=private_dir, project_dir=str(REPO_ROOT), playbook=str(REPO_ROOT / "playbooks" / playbook),
            inventory=str(REPO_ROOT / "inventory" / "lab"),
            envvars={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                     "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir),
                     "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
            extravars=extravars or {}, cmdline="--check" if check else "", limit=limit, quiet=True)
        run = Backup(rc=runner.rc, stdout=runner.stdout.read())
        for event in runner.events:
            data = event.get("event_data", {})
            if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("task") == SNAPSHOT_TASK:
                run.results[data["host"]] = data.get("res", {})
            if event.get("event") == "runner_on_failed":  # also those of tasks with ignore_errors
                run.failed.setdefault(data["host"], []).append(str(data.get("res", {}).get("msg", "")))
    return run


def on_bank(lab: Lab, command: str) -> str:
    """Run a command with the drive mounted read-only (the playbook leaves it unmounted)."""
    assert lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode != 0, "the drive was left mounted"
    lab.ssh(lab.server, f"mount -o ro {DRIVE} /backup")
    try:
        return lab.ssh(lab.server, command).stdout
    finally:
        lab.ssh(lab.server, "umount /backup")


def images(lab: Lab) -> dict[str, list[str]]:
    # a fresh drive has no bank until the first run
    listing = on_bank(lab, "cd /backup/dervish 2>/dev/null || exit 0; "
                           "for v in */; do for i in $v*/summary; do echo ${i%/summary}; done;"
                           " done 2>/dev/null | grep -v '\\*'")
    found: dict[str, list[str]] = {vault: [] for vault in ALL_VAULTS}
    for line in listing.split():
        vault, image = line.split("/")
        found.setdefault(vault, []).append(image)
    return {vault: sorted(names) for vault, names in found.items()}


def tree_inodes(lab: Lab, vault: str, image: str) -> dict[str, str]:
    out = on_bank(lab, f"cd /backup/dervish/{vault}/{image}/tree && find . -type f -printf '%P\\t%i\\n'")
    return dict(line.split("\t") for line in out.splitlines())


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    site = run_playbook(lab, "site.yml")
    assert site.rc == 0, site.stdout[-6000:]
    lab.ssh("laptop1", "mkdir -p /home/snaptest && echo same > /home/snaptest/same.txt && "
                       "echo one > /home/snaptest/changed.txt")
    return site


def test_backup_twice_makes_two_images_per_vault_and_links_unchanged_files(lab: Lab, provisioned) -> None:
    before = images(lab)
    drivelog = lab.ssh(lab.server, "cat /var/log/backup_drivelog 2>/dev/null || true").stdout.splitlines()
    first = backup(lab)
    assert first.rc == 0, first.stdout[-6000:]
    # the run held the drive once for all its hosts: one drive-log line, naming the run
    new_lines = lab.ssh(lab.server, "cat /var/log/backup_drivelog").stdout.splitlines()[len(drivelog):]
    assert len(new_lines) == 1 and " held by ansible-" in new_lines[0], new_lines
    lab.ssh("laptop1", "echo two > /home/snaptest/changed.txt")
    second = backup(lab)
    assert second.rc == 0, second.stdout[-6000:]
    after = images(lab)
    # every image carries the client's restore metadata, fetched through the gate as at night;
    # laptop1 has a real disk, so its images hold that disk's partition table as sfdisk dumps it
    for host in VAULTS:
        for item in first.results[host]["images"] + second.results[host]["images"]:
            assert item["metadata"] == "ok", item
            files = on_bank(lab, f"cd /backup/dervish/{item['vault']}/{item['image']}/metadata && "
                                 "find . -type f | sort").split()
            assert "./metadata.json" in files and "./hostname" in files, (item, files)
            dumps = [name for name in files if name.startswith("./sfdisk/") and name.endswith(".dump")]
            assert bool(dumps) == (host == "laptop1"), (item, files)
    for host, vaults in VAULTS.items():
        made = [run.results[host]["images"] for run in (first, second)]
        assert [item["vault"] for item in made[0]] == list(vaults) == [item["vault"] for item in made[1]]
        for old, new in zip(*made):
            vault = old["vault"]
            assert old["status"] == new["status"] == "success", (old, new)
            assert after[vault] == sorted(before[vault] + [old["image"], new["image"]]), vault
            assert new["reference"] == old["image"]  # the second links against the first
            assert new["image_bytes"] and new["duration"] is not None and new["error"] is None
            old_inodes, new_inodes = tree_inodes(lab, vault, old["image"]), tree_inodes(lab, vault, new["image"])
            changed = {path for path, inode in new_inodes.items() if old_inodes.get(path) != inode}
            assert changed == ({"snaptest/changed.txt"} if vault == "laptop1-home" else set()), (vault, changed)
    home = on_bank(lab, f"stat -c %i /backup/dervish/laptop1-home/{{{first.results['laptop1']['images'][1]['image']},"
                        f"{second.results['laptop1']['images'][1]['image']}}}/tree/snaptest/same.txt").split()
    assert len(home) == 2 and home[0] == home[1]  # the same inode: a hard link, not a copy
    # the final table names every host and vault
    for host, vaults in VAULTS.items():
        for vault in vaults:
            assert any(host in line and vault in line and "success" in line for line in second.stdout.splitlines())
    assert second.results["laptop1"]["server"] == "backup" and second.results["laptop1"]["label"]


def test_limit_backs_up_only_that_hosts_vaults(lab: Lab, provisioned) -> None:
    before = images(lab)
    run = backup(lab, limit="laptop1")
    assert run.rc == 0, run.stdout[-6000:]
    assert set(run.results) == {"laptop1"}
    after = images(lab)
    for vault in ALL_VAULTS:
        grown = len(after[vault]) - len(before[vault])
        assert grown == (1 if vault in VAULTS["laptop1"] else 0), vault


def test_a_vault_selection_backs_up_only_those_vaults(lab: Lab, provisioned) -> None:
    before = images(lab)
    run = backup(lab, extravars={"dervish_backup_vaults": ["laptop1-home", "firewall-etc"]})
    assert run.rc == 0, run.stdout[-6000:]
    assert [item["vault"] for item in run.results["laptop1"]["images"]] == ["laptop1-home"]
    assert "laptop2" not in run.results  # skipped: none of its vaults selected
    after = images(lab)
    for vault in ALL_VAULTS:
        assert len(after[vault]) - len(before[vault]) == (vault in ("laptop1-home", "firewall-etc")), vault


def test_an_unknown_vault_name_fails_before_anything_is_backed_up(lab: Lab, provisioned) -> None:
    before = images(lab)
    run = backup(lab, extravars={"dervish_backup_vaults": ["laptop1-hmoe"]})
    assert run.rc != 0
    assert any("dervish_backup_vaults: laptop1-hmoe is not a vault of any host in this run" in message
               for messages in run.failed.values() for message in messages), run.failed
    assert not run.results
    assert images(lab) == before


def test_check_mode_reports_what_would_run_and_creates_nothing(lab: Lab, provisioned) -> None:
    listing = "find /backup -printf '%p %i %n %s %T@ %m\\n' | sort"
    bank_before = on_bank(lab, listing)
    drivelog_before = lab.ssh(lab.server, "cat /var/log/backup_drivelog 2>/dev/null || true").stdout
    newest = {vault: names[-1] for vault, names in images(lab).items()}
    run = backup(lab, check=True)
    assert run.rc == 0, run.stdout[-6000:]
    for host, vaults in VAULTS.items():
        planned = run.results[host]["images"]
        assert [item["vault"] for item in planned] == list(vaults)
        assert all(item["status"] == "would run" for item in planned)
    assert lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode != 0, "check mode mounted the drive"
    assert lab.ssh(lab.server, "cat /var/log/backup_drivelog").stdout == drivelog_before
    assert lab.ssh(lab.server, "ls -A /run/dervish/holds 2>/dev/null", check=False).stdout.strip() == ""
    assert on_bank(lab, listing) == bank_before
    # with the bank readable (drive mounted by hand), check mode names the would-be reference
    lab.ssh(lab.server, f"mount -o ro {DRIVE} /backup")
    try:
        readable = backup(lab, check=True, limit="laptop1")
    finally:
        lab.ssh(lab.server, "umount /backup")
    assert readable.rc == 0, readable.stdout[-6000:]
    assert {item["vault"]: item["reference"] for item in readable.results["laptop1"]["images"]} == {
        vault: newest[vault] for vault in VAULTS["laptop1"]}


def test_a_snapshot_not_run_on_the_clients_server_fails_clearly(lab: Lab, provisioned, tmp_path: Path) -> None:
    playbook = tmp_path / "misdelegated.yml"
    playbook.write_text(
        "- hosts: laptop1\n  gather_facts: false\n  tasks:\n"
        "    - name: Back up laptop1 on itself\n      dervish.backup.snapshot:\n      ignore_errors: true\n"
        "    - name: Back up laptop1 on another host\n      dervish.backup.snapshot:\n      delegate_to: laptop2\n"
        "      ignore_errors: true\n")
    before = images(lab)
    run = backup(lab, playbook=str(playbook))
    itself, elsewhere = run.failed["laptop1"]
    assert itself.startswith("laptop1: dervish.backup.snapshot must run on laptop1's backup server backup, "
                             "but the task runs on laptop1 itself; add delegate_to: "), itself
    assert elsewhere.startswith("laptop1: dervish.backup.snapshot must run on laptop1's backup server backup, "
                                "but the task is delegated to laptop2; add delegate_to: "), elsewhere
    message = itself
    assert "dervish.backup.backup_server_of(hostvars, groups)" in message
    assert images(lab) == before


def test_an_absent_drive_fails_every_selected_host_at_once_and_writes_nothing(lab: Lab, provisioned) -> None:
    loop = (lab.dir / "drive.loop").read_text().strip()
    nodes = lab.ssh(lab.server, f"stat -c '%n %t %T' {loop} {loop}p1 {loop}p2").stdout.splitlines()
    lab.ssh(lab.server, f"rm {loop} {loop}p1 {loop}p2")  # the drive is gone from this host
    try:
        run = backup(lab, limit="laptop1,laptop2")
        assert lab.ssh(lab.server, "ls -A /backup").stdout == ""  # nothing written into the bare mount point
    finally:
        for line in nodes:
            name, major, minor = line.split()
            lab.ssh(lab.server, f"mknod -m 660 {name} b $((0x{major})) $((0x{minor}))")
    assert run.rc != 0
    for host in ("laptop1", "laptop2"):
        message = run.results[host]["msg"]
        assert message.startswith("the backup drive cannot be used (dervish-backup --acquire exited 2), "
                                  "nothing was backed up: "), message
        assert "LABEL=BACKUPDRIVE not found" in message
        assert run.results[host]["images"] == []
