"""playbooks/backup.yml under faults (issue 8, "Faults"), for real in the lab.

A client whose host is down, an image whose engine is killed with SIGKILL during a (bandwidth-limited)
transfer, a bank filled to the last block, a backup drive unplugged from the server, and the nightly run
started while a playbook run images a vault. Backups are sacred: every check ends with the images made
before the fault unchanged and no failed image ever used as a reference.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, Iterator, List

import pytest

from dervish_engine.summary import Summary, parse_summary
from lab import Lab
from playbooks import PlaybookRun, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
VAULTS = {"laptop1": ("laptop1-etc", "laptop1-home"), "laptop2": ("laptop2-etc",), "firewall": ("firewall-etc",)}
ALL_VAULTS = tuple(v for vaults in VAULTS.values() for v in vaults)
BANK = "/backup/dervish"
WRAPPER = "/usr/local/sbin/dervish-backup"
MASTER = "/etc/dervish/master.conf"
GATE_LOG = "/var/log/dervish-gate.log"
SLOW_VAULT = "laptop1-home"
BIG = "/home/faults-big"        # in laptop1-home's tree: what the slow or full transfers carry


@pytest.fixture(scope="module")
def provisioned(lab: Lab):
    """The lab provisioned, and every vault with a good image (what the faults must not touch)."""
    site = run_playbook(lab, "site.yml")
    assert site.rc == 0, site.stdout[-6000:]
    first = run_playbook(lab, "backup.yml")
    assert first.rc == 0, first.stdout[-6000:]
    return first


# ------------------------------------------------------------------------------------------- helpers
def _mounted(lab: Lab) -> bool:
    return lab.ssh(lab.server, "mountpoint -q /backup", check=False).returncode == 0


@contextmanager
def _drive_mounted(lab: Lab) -> Iterator[None]:
    """The drive mounted by hand for a look (a run leaves a drive mounted by hand alone)."""
    mounted_here = not _mounted(lab)
    if mounted_here:
        lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")
    try:
        yield
    finally:
        if mounted_here:
            lab.ssh(lab.server, "umount /backup")


def _images(lab: Lab, vault: str) -> Dict[str, Summary]:
    """Image name -> its parsed summary (an image without a summary gets an empty one), drive mounted."""
    out = lab.ssh(lab.server, f"cd {BANK}/{vault} && for i in *; do [ \"$i\" = dirvish ] && continue; "
                              "echo \"=== $i\"; cat \"$i/summary\" 2>/dev/null; done").stdout
    images = {}
    for chunk in out.split("=== ")[1:]:
        name, dummy, text = chunk.partition("\n")
        images[name] = parse_summary(text)
    return images


def _all_images(lab: Lab) -> Dict[str, Dict[str, Summary]]:
    with _drive_mounted(lab):
        return {vault: _images(lab, vault) for vault in ALL_VAULTS}


def _new(before: Dict[str, Dict[str, Summary]], after: Dict[str, Dict[str, Summary]], vault: str) -> Dict[str, Summary]:
    return {name: s for name, s in after[vault].items() if name not in before[vault]}


def _newest_good(images: Dict[str, Summary]) -> str:
    good = [(s.backup_complete or "", name) for name, s in images.items() if s.good]
    return max(good)[1]


def _checksums(lab: Lab, image_dirs: List[str]) -> Dict[str, str]:
    """Per image directory: every entry's inode, mode, links, size, mtime and the content of every file."""
    sums = {}
    for image in image_dirs:
        sums[image] = lab.ssh(lab.server, f"cd {image} && find . -printf '%p %i %m %n %s %T@\\n' | LC_ALL=C sort && "
                                          "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum",
                              timeout=300).stdout
    return sums


def _recap(run: PlaybookRun) -> Dict[str, Dict[str, int]]:
    """host -> its PLAY RECAP counts (ok, changed, unreachable, failed, ...)."""
    recap = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", run.stdout, re.M):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return recap


@contextmanager
def _slow(lab: Lab, vault: str = SLOW_VAULT, size: int = 3_000_000) -> Iterator[None]:
    """``size`` new random bytes in the vault's tree, sent at Dirvish's speed-limit 0.05 (50 KB/s)."""
    conf = f"/etc/dervish/vaults/{vault}.conf"
    lab.ssh("laptop1", f"head -c {size} /dev/urandom > {BIG}")
    lab.ssh(lab.server, f"cp -p {conf} {conf}.faults && echo 'speed-limit: 0.05' >> {conf}")
    try:
        yield
    finally:
        lab.ssh(lab.server, f"mv {conf}.faults {conf}")
        lab.ssh("laptop1", f"rm -f {BIG}")


def _writers(lab: Lab, vault: str) -> List[int]:
    """PIDs of the rsyncs writing an image of ``vault`` on the server (rsync's receiver forks: 2 per image)."""
    pattern = f"(^|/)rsync .*{BANK}/{vault}/[^/ ]+/tree"
    return [int(pid) for pid in lab.ssh(lab.server, f"pgrep -f -- '{pattern}'", check=False).stdout.split()]


def _images_written(lab: Lab, vault: str) -> set:
    """The image directories of ``vault`` that an rsync writes into right now (its last argument)."""
    pattern = f"(^|/)rsync .*{BANK}/{vault}/[^/ ]+/tree"
    lines = lab.ssh(lab.server, f"pgrep -af -- '{pattern}'", check=False).stdout.splitlines()
    return {line.split()[-1] for line in lines if line.split()}


def _writer(lab: Lab, vault: str, timeout: float = 180) -> int:
    """The PID of the rsync writing an image of ``vault`` on the server, once it runs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = _writers(lab, vault)
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no rsync into {vault} started within {timeout}s")


def _alive(lab: Lab, pid: int) -> bool:
    return lab.ssh(lab.server, f"kill -0 {pid}", check=False).returncode == 0


def _one_vault(lab: Lab, vault: str = SLOW_VAULT, **kw) -> PlaybookRun:
    client = next(c for c, vaults in VAULTS.items() if vault in vaults)
    return run_playbook(lab, "backup.yml", limit=client, extravars={"dervish_backup_vaults": [vault]}, **kw)


# --------------------------------------------------------------------------------------------- tests
def test_an_unreachable_client_fails_only_that_host(lab: Lab, provisioned) -> None:
    before = _all_images(lab)
    lab.labctl("stop", "laptop2")
    try:
        run = run_playbook(lab, "backup.yml")
    finally:
        lab.labctl("start", "laptop2")
    assert run.rc != 0, run.stdout[-4000:]
    recap = _recap(run)
    assert recap["laptop2"]["unreachable"] + recap["laptop2"]["failed"] >= 1, recap
    for host in ("laptop1", "firewall"):
        assert recap[host]["unreachable"] == 0 and recap[host]["failed"] == 0, (host, run.stdout[-4000:])
    after = _all_images(lab)
    for vault in ALL_VAULTS:
        new = _new(before, after, vault)
        if vault == "laptop2-etc":
            assert not [n for n, s in new.items() if s.good], f"laptop2 was down, yet {vault} got {new}"
        else:
            assert len(new) == 1 and next(iter(new.values())).good, f"{vault}: {new}"
    assert not _mounted(lab), "the drive is let go at the end, also when a host failed"


def test_an_image_killed_mid_run_is_never_a_reference_and_the_next_run_succeeds(lab: Lab, provisioned) -> None:
    before = _all_images(lab)[SLOW_VAULT]
    reference = _newest_good(before)
    with _slow(lab), ThreadPoolExecutor(1) as pool:
        started = pool.submit(_one_vault, lab)
        rsync = _writer(lab, SLOW_VAULT)
        # the engine: the first parent that is not rsync itself (rsync's receiver forks)
        engine = int(lab.ssh(lab.server, f"p=$(ps -o ppid= -p {rsync}); [ \"$(ps -o comm= -p $p)\" != rsync ] || "
                                         "p=$(ps -o ppid= -p $p); echo $p").stdout)
        lab.ssh(lab.server, f"kill -KILL {engine}")
        killed_run = started.result(timeout=600)
    assert killed_run.rc != 0 and "laptop1" in killed_run.failed, killed_run.stdout[-4000:]
    assert not _alive(lab, rsync), "the rsync of a killed engine must die with it"

    lab.ssh("laptop1", f"echo after the kill > {BIG}")  # the next run carries something new
    try:
        next_run = _one_vault(lab)
    finally:
        lab.ssh("laptop1", f"rm -f {BIG}")
    assert next_run.rc == 0, next_run.stdout[-4000:]
    with _drive_mounted(lab):
        after = _images(lab, SLOW_VAULT)
        new = {name: s for name, s in after.items() if name not in before}
        assert len(new) == 2, new
        killed, good = sorted(new, key=lambda name: (new[name].good, name))
        assert not new[killed].good, f"the killed image {killed} must be marked failed: {new[killed].status}"
        assert new[good].good and new[good].reference == reference, (
            f"the next image {good} must link against {reference}, never the killed {killed}: {new[good].reference}")
        assert lab.ssh(lab.server, f"cat {BANK}/{SLOW_VAULT}/{good}/tree/{BIG.rsplit('/', 1)[1]}").stdout == \
            "after the kill\n"
        assert killed not in lab.ssh(lab.server, f"cat {BANK}/{SLOW_VAULT}/dirvish/default.hist").stdout
    assert not _mounted(lab)


def test_a_full_bank_fails_cleanly_and_every_earlier_image_stays_unchanged(lab: Lab, provisioned) -> None:
    lab.ssh("laptop1", f"head -c 60000000 /dev/urandom > {BIG}")  # more than the slack
    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")  # by hand: the runs leave it (and the filler) alone
    try:
        before = {vault: _images(lab, vault) for vault in ALL_VAULTS}
        earlier = [f"{BANK}/{vault}/{name}" for vault, images in before.items() for name in images]
        sums = _checksums(lab, earlier)
        hist = lab.ssh(lab.server, f"cat {BANK}/{SLOW_VAULT}/dirvish/default.hist").stdout
        # leave 3 MiB of every free block, root's reserve included (root writes into it)
        # ext4 keeps some clusters back even from root: the first size that fits
        lab.ssh(lab.server, "free=$(stat -f -c '%f * %S' /backup); for slack in 3 8 16 24 32 48; do "
                            "fallocate -l $(( $free - $slack * 1024 * 1024 )) /backup/faults-filler && exit 0; "
                            "done; exit 1")
        run = run_playbook(lab, "backup.yml", limit="laptop1")
        assert run.rc != 0 and "laptop1" in run.failed, run.stdout[-4000:]
        assert "Traceback" not in run.stdout, run.stdout[-4000:]
        message = " ".join(run.failed["laptop1"])
        assert SLOW_VAULT in message and ("full" in message or "No space left on device" in message), message

        assert _checksums(lab, earlier) == sums, "an image made before the full bank changed"
        assert lab.ssh(lab.server, f"cat {BANK}/{SLOW_VAULT}/dirvish/default.hist").stdout == hist
        for name, summary in _images(lab, SLOW_VAULT).items():
            if name not in before[SLOW_VAULT]:
                assert not summary.good, f"{name} on a full bank must not be a good image"
                assert lab.ssh(lab.server, f"test -e {BANK}/{SLOW_VAULT}/{name}/tree", check=False).returncode != 0, \
                    "the failed image's partial tree is removed"
        assert lab.ssh(lab.server, f"test -e {BANK}/{SLOW_VAULT}/dirvish/lock_file", check=False).returncode != 0
    finally:
        lab.ssh(lab.server, "rm -f /backup/faults-filler; umount /backup")
        lab.ssh("laptop1", f"rm -f {BIG}")
    again = run_playbook(lab, "backup.yml", limit="laptop1")
    assert again.rc == 0, again.stdout[-4000:]


def test_an_absent_drive_fails_every_host_at_once_and_writes_nothing(lab: Lab, provisioned) -> None:
    before = _all_images(lab)
    drivelog = lab.ssh(lab.server, "cat /var/log/backup_drivelog").stdout
    gate_logs = {c: lab.ssh(c, f"cat {GATE_LOG} 2>/dev/null || true").stdout for c in VAULTS}
    with lab.drive_absent():
        run = run_playbook(lab, "backup.yml")
        bare = lab.ssh(lab.server, "ls -A /backup 2>/dev/null || true").stdout
        assert bare == "", f"nothing is written into the bare mount point: {bare}"
    assert run.rc != 0
    assert "Traceback" not in run.stdout, run.stdout[-4000:]
    assert set(run.failed) == set(VAULTS), run.failed
    for client, messages in run.failed.items():
        assert len(messages) == 1 and "backup drive LABEL=BACKUPDRIVE not found" in messages[0], (client, messages)
    # at once: the server never asked a client for anything
    assert {c: lab.ssh(c, f"cat {GATE_LOG} 2>/dev/null || true").stdout for c in VAULTS} == gate_logs
    new_log = lab.ssh(lab.server, "cat /var/log/backup_drivelog").stdout[len(drivelog):].splitlines()
    assert new_log and all(line.startswith("NO-DRIVE ") for line in new_log), new_log
    assert _all_images(lab) == before
    assert not _mounted(lab)


def test_a_nightly_run_during_a_playbook_run_does_not_image_the_same_vault_twice(lab: Lab, provisioned) -> None:
    before = _all_images(lab)
    written: set = set()
    writers = 0
    with _slow(lab), ThreadPoolExecutor(2) as pool:
        started = pool.submit(_one_vault, lab)
        _writer(lab, SLOW_VAULT)
        # a second slot, so the nightly run's first vault need not wait for the playbook's image to end:
        # it reaches the slow vault while the playbook still images it
        lab.ssh(lab.server, f"cp -p {MASTER} {MASTER}.faults && sed -i 's/^Runall-jobs: .*/Runall-jobs: 2/' {MASTER}")
        try:
            nightly_run = pool.submit(lab.ssh, lab.server, WRAPPER, check=False, timeout=600)
            while not nightly_run.done():
                now = _images_written(lab, SLOW_VAULT)
                written |= now
                writers = max(writers, len(now))
                time.sleep(0.2)
        finally:
            lab.ssh(lab.server, f"mv {MASTER}.faults {MASTER}")
        nightly = nightly_run.result()
        playbook = started.result(timeout=600)
    out = nightly.stdout + nightly.stderr
    assert writers == 1, f"{writers} images of {SLOW_VAULT} were written at once: {written}"
    assert nightly.returncode == 0, out   # a busy vault is not a failure of the nightly run
    assert [line for line in out.splitlines() if SLOW_VAULT in line and "busy" in line], out
    assert playbook.rc == 0, playbook.stdout[-4000:]
    after = _all_images(lab)
    new = _new(before, after, SLOW_VAULT)
    assert len(new) == 1 and next(iter(new.values())).good, f"{SLOW_VAULT} imaged once, by the playbook: {new}"
    for vault in ALL_VAULTS:
        if vault != SLOW_VAULT:
            made = _new(before, after, vault)
            assert len(made) == 1 and next(iter(made.values())).good, f"the nightly run imaged {vault}: {made}"
    assert not _mounted(lab), "the drive is unmounted once neither run holds it"
