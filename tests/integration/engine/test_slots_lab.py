"""Image slots and busy vaults on a real lab server: dervish runs on lab host ``backup`` (its own
``/run/lock/dervish-slots``, the default) and images lab clients over real ssh with real rsync.

- two ``dervish image`` of different vaults with ``Runall-jobs: 1`` do not overlap (their summaries'
  Backup-begin/-complete), the second says that it waits and for whom; with 2 they do overlap;
- ``runall`` shares the slots with a ``dervish image`` running meanwhile;
- a vault being imaged is busy: ``dervish image`` exits 3 and writes nothing, ``runall`` reports it
  and exits 0;
- a killed image frees its slot at once;
- ``ImageResult`` after real images: reference, files and bytes transferred, sizes, duration.
"""

from __future__ import annotations

import json
import shlex
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
ROOT = "/srv/dervish-slots-test"
SRC = "/srv/dervish-slots-src"
KEYDIR = "/root/.ssh/dervish-slots-test"
DERVISH = f"PYTHONPATH={shlex.quote(str(ENGINE_PARENT))} python3 -m dervish_engine --config {ROOT}/master.conf"
TIME = "%Y-%m-%d %H:%M:%S"
# 1 MiB at 400 KB/s: each image's rsync takes about 2.5 s, long enough to see any overlap
SLOW = "rsync-option: --bwlimit=400\n"


class Server:
    def __init__(self, lab):
        self.lab = lab

    def sh(self, command: str, check: bool = True, timeout: int = 120):
        return self.lab.ssh("backup", command, check=check, timeout=timeout)

    def master(self, runall=("lap1", "lap2"), jobs: int = 1) -> None:
        text = f"bank:\n\t{ROOT}/bank\nRunall:\n" + "".join(f"\t{v}\n" for v in runall) + f"Runall-jobs: {jobs}\n"
        self.lab.ssh("backup", f"cat > {ROOT}/master.conf", input=text)

    def vault(self, name: str, client: str, extra: str = "") -> None:
        rsh = f"ssh -i {KEYDIR}/id -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={KEYDIR}/known_hosts"
        conf = f"client: {client}\ntree: {SRC}\nrsh: {rsh}\n{extra}"
        self.lab.ssh("backup", f"mkdir -p {ROOT}/bank/{name}/dirvish && cat > {ROOT}/bank/{name}/dirvish/default.conf",
                     input=conf)

    def summary(self, vault: str, image: str) -> dict:
        text = self.sh(f"cat {ROOT}/bank/{vault}/{image}/summary").stdout
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith("\t"))

    def interval(self, vault: str, image: str):
        s = self.summary(vault, image)
        return datetime.strptime(s["Backup-begin"], TIME), datetime.strptime(s["Backup-complete"], TIME)

    def images(self, vault: str):
        return sorted(self.sh(f"ls {ROOT}/bank/{vault}").stdout.split())


@pytest.fixture
def server(lab):
    lab.ssh("backup", f"rm -rf {ROOT} {KEYDIR} && mkdir -p {ROOT}/bank {KEYDIR} && chmod 700 {KEYDIR}")
    lab.ssh("backup", f"umask 077 && cat > {KEYDIR}/id", input=(lab.dir / "id_lab").read_text())
    lab.ssh("backup", f"cat > {KEYDIR}/known_hosts", input=(lab.dir / "known_hosts").read_text())
    for client in ("laptop1", "laptop2"):
        lab.ssh(client, f"rm -rf {SRC} && mkdir -p {SRC}/d && head -c 1048576 /dev/urandom > {SRC}/big && "
                        f"for i in $(seq 1 20); do echo file $i > {SRC}/d/f$i; done")
    srv = Server(lab)
    srv.vault("lap1", "laptop1", SLOW)
    srv.vault("lap2", "laptop2", SLOW)
    srv.master()
    yield srv
    # what a test left running in the background: by the PIDs it recorded
    lab.ssh("backup", f"for f in {ROOT}/*.pid; do [ -f \"$f\" ] && kill -KILL \"$(cat \"$f\")\"; done; "
                      f"sleep 0.5; rm -rf {ROOT} {KEYDIR}", check=False)
    for client in ("laptop1", "laptop2"):
        lab.ssh(client, f"rm -rf {SRC}", check=False)


def both_at_once(server, first: str, second: str) -> None:
    """Start two dervish commands 0.3 s apart on the server; each leaves <n>.out and <n>.rc."""
    server.sh(textwrap.dedent(f"""
        cd {ROOT}
        ( {DERVISH} {first} > 1.out 2>&1; echo $? > 1.rc ) &
        sleep 0.3
        ( {DERVISH} {second} > 2.out 2>&1; echo $? > 2.rc ) &
        wait
    """), timeout=120)


def output(server, n: int):
    return int(server.sh(f"cat {ROOT}/{n}.rc").stdout), server.sh(f"cat {ROOT}/{n}.out").stdout


def test_two_images_with_one_slot_do_not_overlap(server):
    both_at_once(server, "image lap1 --image one", "image lap2 --image two")
    (rc1, out1), (rc2, out2) = output(server, 1), output(server, 2)
    assert (rc1, rc2) == (0, 0), (out1, out2)
    begin1, end1 = server.interval("lap1", "one")
    begin2, end2 = server.interval("lap2", "two")
    assert end1 - begin1 >= timedelta(seconds=2)  # the rsync really was slow
    assert begin2 >= end1, (begin1, end1, begin2, end2)  # lap2 started only once lap1 had finished
    assert "dervish: waiting for an image slot: all 1 (Runall-jobs: 1) are in use by: " in out2
    assert "lap1:default image one since " in out2
    assert "taken after waiting" in out2 and "waiting" not in out1
    log = server.sh(f"zcat {ROOT}/bank/lap2/two/log.gz").stdout
    assert "for image slot 1 of 1 (Runall-jobs:)" in log
    slot = server.sh("stat -c '%a %U' /run/lock/dervish-slots /run/lock/dervish-slots/slot-1").stdout.split("\n")
    # the default directory on the server: root's, writable by root only (0755 when an engine command made it,
    # 0700 when the nightly wrapper's umask 077 did, as it does when a nightly run came first on this lab)
    (dir_mode, dir_owner), slot_file = slot[0].split(), slot[1]
    assert dir_owner == "root" and int(dir_mode, 8) & 0o022 == 0 and slot_file == "600 root", slot


def test_two_slots_let_two_images_overlap(server):
    server.master(jobs=2)
    both_at_once(server, "image lap1 --image one", "image lap2 --image two")
    (rc1, out1), (rc2, out2) = output(server, 1), output(server, 2)
    assert (rc1, rc2) == (0, 0), (out1, out2)
    begin1, end1 = server.interval("lap1", "one")
    begin2, end2 = server.interval("lap2", "two")
    assert begin2 < end1 and begin1 < end2
    assert "waiting" not in out1 + out2


def test_runall_and_an_image_share_the_slots(server):
    server.master(runall=("lap1",), jobs=1)
    both_at_once(server, "image lap2 --image solo", "runall")
    (rc1, out1), (rc2, out2) = output(server, 1), output(server, 2)
    assert (rc1, rc2) == (0, 0), (out1, out2)
    [image] = [name for name in server.images("lap1") if name != "dirvish"]
    begin_solo, end_solo = server.interval("lap2", "solo")
    begin_run, end_run = server.interval("lap1", image)
    assert begin_run >= end_solo, (begin_solo, end_solo, begin_run, end_run)
    assert "lap1: waiting for an image slot: all 1 (Runall-jobs: 1) are in use by: " in out2
    assert "lap1 done (success)" in out2


def in_background(server, n: int, args: str) -> int:
    """Start ``dervish ARGS`` on the server in the background; its PID (also in <n>.pid), <n>.out, <n>.rc."""
    server.sh(f"cd {ROOT}; ( {DERVISH} {args} > {n}.out 2>&1 & echo $! > {n}.pid.tmp; mv {n}.pid.tmp {n}.pid; "
              f"wait $!; echo $? > {n}.rc ) > /dev/null 2>&1 < /dev/null &")
    end = time.monotonic() + 10
    while server.sh(f"test -e {ROOT}/{n}.pid", check=False).returncode != 0:
        assert time.monotonic() < end
        time.sleep(0.05)
    return int(server.sh(f"cat {ROOT}/{n}.pid").stdout)


def test_a_vault_being_imaged_is_busy(server):
    server.vault("lap1", "laptop1", "rsync-option: --bwlimit=100\n")  # about 10 s
    server.master(jobs=2)  # runall's lap2 need not wait for lap1's slot
    pid = in_background(server, 1, "image lap1 --image running")
    lock = f"{ROOT}/bank/lap1/dirvish/lock_file"
    end = time.monotonic() + 30
    while server.sh(f"test -e {lock}", check=False).returncode != 0:
        assert time.monotonic() < end, server.sh(f"cat {ROOT}/1.*", check=False).stdout
        time.sleep(0.1)
    before = server.sh(f"cd {ROOT}/bank/lap1 && ls -a . dirvish && cat dirvish/lock_file").stdout
    busy = server.sh(f"{DERVISH} image lap1 --image second", check=False)
    assert busy.returncode == 3, busy.stderr
    assert busy.stderr.startswith(f"dervish: vault lap1 is being backed up by PID {pid} since ")
    assert busy.stderr.rstrip().endswith(": busy, no image made") and busy.stdout == ""
    runall = server.sh(f"{DERVISH} runall", check=False)  # lap1 busy, lap2 imaged
    assert runall.returncode == 0, runall.stdout + runall.stderr
    assert "lap1 done (busy: vault lap1 is being backed up by PID " in runall.stdout
    assert "lap2 done (success)" in runall.stdout
    assert runall.stdout.rstrip().endswith("busy (being imaged by another run, not counted as failed): lap1")
    after = server.sh(f"cd {ROOT}/bank/lap1 && ls -a . dirvish && cat dirvish/lock_file").stdout
    assert after == before  # nothing was written to the busy vault (and the first image still runs)
    end = time.monotonic() + 60
    while server.sh(f"test -e {ROOT}/1.rc", check=False).returncode != 0:
        assert time.monotonic() < end
        time.sleep(0.2)
    assert output(server, 1)[0] == 0
    assert server.images("lap1") == ["dirvish", "running"]


def test_a_killed_image_frees_its_slot(server):
    server.vault("lap1", "laptop1", "rsync-option: --bwlimit=20\n")  # 50 s: killed long before
    pid = in_background(server, 1, "image lap1 --image killed")
    end = time.monotonic() + 30
    while "rsync" not in server.sh(f"cat {ROOT}/bank/lap1/killed/log 2>/dev/null", check=False).stdout:
        assert time.monotonic() < end, server.sh(f"cat {ROOT}/1.*", check=False).stdout
        time.sleep(0.1)
    server.sh(f"kill -KILL {pid}")
    start = time.monotonic()
    other = server.sh(f"{DERVISH} image lap2 --image next", check=False)
    assert other.returncode == 0, other.stderr
    assert "waiting" not in other.stderr and time.monotonic() - start < 20
    server.vault("lap1", "laptop1", SLOW)
    again = server.sh(f"{DERVISH} image lap1 --image after", check=False)
    assert again.returncode == 0 and "marked: error -- interrupted" in again.stderr, again.stderr
    assert server.summary("lap1", "after")["Reference"] == "default"  # the killed image is never one


API = textwrap.dedent("""
    import json, sys
    from dervish_engine.config import load_master
    from dervish_engine.image import ImageOptions, ImageRun
    master = load_master(sys.argv[1])
    print(json.dumps(ImageRun(master, sys.argv[2], options=ImageOptions(image=sys.argv[3])).run().as_dict()))
""")


def api_image(server, vault: str, name: str) -> dict:
    proc = server.lab.ssh("backup", f"PYTHONPATH={shlex.quote(str(ENGINE_PARENT))} python3 - "
                                    f"{ROOT}/master.conf {vault} {name}", input=API)
    return json.loads(proc.stdout)


def test_image_result_fields_after_real_images(server):
    server.vault("lap1", "laptop1")  # full speed
    first = api_image(server, "lap1", "first")
    assert (first["status"], first["name"], first["reference"], first["error"]) == ("success", "first", None, None)
    assert first["files_transferred"] == 21 and first["metadata"] == "none" and first["exit_code"] == 0
    assert first["image_bytes"] == first["new_bytes"] == 1048576 + sum(len(f"file {i}\n") for i in range(1, 21))
    assert first["bytes_transferred"] == first["new_bytes"]
    assert 0 < first["duration"] < 60 and first["waited"] < 1
    summary = server.summary("lap1", "first")
    assert int(summary["Image-bytes"]) == first["image_bytes"] and summary["Status"] == "success"
    server.lab.ssh("laptop1", f"echo changed and longer > {SRC}/d/f7")
    second = api_image(server, "lap1", "second")
    assert (second["status"], second["reference"], second["files_transferred"]) == ("success", "first", 1)
    assert second["new_bytes"] == len("changed and longer\n")
    assert second["image_bytes"] == first["image_bytes"] - len("file 7\n") + len("changed and longer\n")
    assert 0 < second["bytes_transferred"] <= second["new_bytes"]
    inodes = server.sh(f"stat -c %i {ROOT}/bank/lap1/first/tree/big {ROOT}/bank/lap1/second/tree/big").stdout.split()
    assert inodes[0] == inodes[1]  # unchanged: a hard link
    server.lab.ssh("laptop1", f"mv {SRC} {SRC}.gone")
    try:
        failed = api_image(server, "lap1", "third")
    finally:
        server.lab.ssh("laptop1", f"mv {SRC}.gone {SRC}")
    assert (failed["status"], failed["exit_code"], failed["reference"]) == ("error", 1, "second")
    assert failed["summary_status"] == "fatal error (23) -- tree not found on the client"
    assert "change_dir" in failed["error"] and "No such file or directory" in failed["error"], failed["error"]
