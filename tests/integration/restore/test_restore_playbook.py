"""playbooks/restore.yml in the lab (issue 9): a deleted file and an overwritten directory come back with
identical metadata (owner, mode, ACL, xattr, hard links, symlinks, mtime), in place and under another
directory; files the image lacks are kept unless delete; the one-time key is gone afterwards, also after a
failed run and a killed one (removed by the client role's cleanup); --check --diff lists and changes nothing;
the nightly key stays read-only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lab import REPO_ROOT, Lab
from playbooks import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
TOP = "/home/rtest"
PATHS = [f"{TOP}/doc.txt", f"{TOP}/proj"]
OTHER = "/home/rtest-b"   # a second, unrelated target directory: its own key
MARK = "dervish-restore"

MAKE_TREE = f"""set -e
rm -rf {TOP} {OTHER} /root/restored
mkdir -p {TOP}/proj/sub {OTHER}
echo other > {OTHER}/note.txt && chmod 604 {OTHER}/note.txt && touch -d '2019-05-06 07:08:09' {OTHER}/note.txt
echo doc > {TOP}/doc.txt
chown 1234:4321 {TOP}/doc.txt && chmod 640 {TOP}/doc.txt
setfattr -n user.note -v kept {TOP}/doc.txt && setfacl -m u:4242:r {TOP}/doc.txt
echo a > {TOP}/proj/a.txt && ln {TOP}/proj/a.txt {TOP}/proj/h.txt && ln -s a.txt {TOP}/proj/ln
echo d > {TOP}/proj/sub/deep.txt && chmod 2750 {TOP}/proj/sub && chown 7:8 {TOP}/proj/sub
setfattr -n user.dir -v yes {TOP}/proj/sub && setfacl -d -m u:4242:rx {TOP}/proj/sub
touch -h -d '2020-01-02 03:04:05' {TOP}/doc.txt {TOP}/proj/ln {TOP}/proj/a.txt {TOP}/proj/sub/deep.txt
touch -d '2021-01-01 00:00:00' {TOP}/proj/sub {TOP}/proj
"""

# Every entry below a directory: type and mode, owner, mtime (ns), size, link target, xattrs (ACLs are
# the system.posix_acl_* ones), and the first path of its hard-link group.
MANIFEST = r"""
import json, os, sys
top = sys.argv[1]
out, first = {}, {}
for here, dirs, files in os.walk(top):
    dirs.sort()
    for name in sorted(dirs + files):
        path = os.path.join(here, name)
        st = os.lstat(path)
        rel = os.path.relpath(path, top)
        xattrs = {k: os.getxattr(path, k, follow_symlinks=False).hex()
                  for k in sorted(os.listxattr(path, follow_symlinks=False))}
        link = os.readlink(path) if os.path.islink(path) else None
        group = first.setdefault(st.st_ino, rel) if not os.path.isdir(path) else None
        out[rel] = [st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, None if os.path.isdir(path) else st.st_size,
                    link, xattrs, group, st.st_nlink if not os.path.isdir(path) else None]
print(json.dumps(out, sort_keys=True))
"""


def manifest(lab: Lab, top: str = TOP) -> dict:
    return json.loads(lab.ssh("laptop1", f"python3 - {top}", input=MANIFEST).stdout)


def authorized_keys(lab: Lab) -> str:
    return lab.ssh("laptop1", "cat /root/.ssh/authorized_keys").stdout


def key_dirs(lab: Lab) -> str:
    return lab.ssh(lab.server, "ls -A /run/dervish/restore 2>/dev/null || true").stdout.strip()


def restore(lab: Lab, check: bool = False, **variables):
    extravars = {"dervish_restore_paths": PATHS, **{f"dervish_restore_{k}": v for k, v in variables.items()}}
    return run_playbook(lab, "restore.yml", extravars=extravars, check=check, limit="laptop1")


@pytest.fixture(scope="module")
def original(lab: Lab) -> dict:
    """laptop1 provisioned, a tree with every kind of metadata backed up; its manifest."""
    site = run_playbook(lab, "site.yml")  # the whole lab: a fresh server pins a client's key only in a run with it
    assert site.rc == 0, site.stdout[-6000:]
    lab.ssh("laptop1", MAKE_TREE)
    backup = run_playbook(lab, "backup.yml", limit="laptop1", extravars={"dervish_backup_vaults": ["laptop1-home"]})
    assert backup.rc == 0, backup.stdout[-6000:]
    tree = manifest(lab)
    assert tree["proj/h.txt"][7] == "proj/a.txt" and tree["proj/ln"][5] == "a.txt"  # a hard link, a symlink
    assert any("acl" in name for name in tree["doc.txt"][6]) and any("acl" in n for n in tree["proj/sub"][6])
    return tree


def assert_no_restore_key(lab: Lab, gate_line: str) -> None:
    keys = authorized_keys(lab)
    assert MARK not in keys, keys
    assert gate_line in keys.splitlines()  # the nightly key's line is as it was
    assert key_dirs(lab) == ""


def gate(lab: Lab) -> str:
    return next(line for line in authorized_keys(lab).splitlines() if "dervish-gate" in line)


def test_in_place_brings_back_a_deleted_file_and_an_overwritten_directory(lab: Lab, original: dict) -> None:
    gate_line = gate(lab)
    lab.ssh("laptop1", f"rm {TOP}/doc.txt && rm -rf {TOP}/proj && mkdir {TOP}/proj && echo junk > {TOP}/proj/a.txt"
                       f" && echo mine > {TOP}/proj/extra.txt")
    run = restore(lab)
    assert run.rc == 0, run.stdout[-6000:]
    after = manifest(lab)
    extra = after.pop("proj/extra.txt")  # not in the image: kept (no delete)
    assert extra[4] == 5
    assert after == original
    assert f"{TOP}/doc.txt" in run.stdout  # --diff lists what was restored
    assert_no_restore_key(lab, gate_line)
    # the nightly key still only reads: a push with it is refused by the gate
    push = lab.ssh(lab.server, "rsync -e 'ssh -i /root/.ssh/dervish_backup_ed25519 -o IdentitiesOnly=yes "
                               "-o BatchMode=yes' /etc/hostname laptop1:/home/rtest/pushed", check=False)
    assert push.returncode != 0
    assert lab.ssh("laptop1", f"test -e {TOP}/pushed", check=False).returncode != 0


def test_to_another_directory_with_delete(lab: Lab, original: dict) -> None:
    gate_line = gate(lab)
    lab.ssh("laptop1", "mkdir -p /root/restored/home/rtest/proj && echo old > /root/restored/home/rtest/proj/stale")
    run = restore(lab, dest="/root/restored", delete=True)
    assert run.rc == 0, run.stdout[-6000:]
    assert manifest(lab, f"/root/restored{TOP}") == original  # stale is gone: delete
    assert_no_restore_key(lab, gate_line)


def test_paths_in_unrelated_directories_get_a_key_each(lab: Lab, original: dict) -> None:
    gate_line = gate(lab)
    before = lab.ssh("laptop1", f"stat -c '%a %Y %s' {OTHER}/note.txt").stdout
    lab.ssh("laptop1", f"rm {TOP}/doc.txt {OTHER}/note.txt")
    run = restore(lab, paths=[f"{TOP}/doc.txt", f"{OTHER}/note.txt"])
    assert run.rc == 0, run.stdout[-6000:]
    assert manifest(lab)["doc.txt"] == original["doc.txt"]
    assert lab.ssh("laptop1", f"stat -c '%a %Y %s' {OTHER}/note.txt").stdout == before
    # each copy went through the key of its own directory (the log names the target of each copy)
    log = lab.ssh(lab.server, "tail -n 20 /var/log/dervish/backup.log").stdout
    assert "of laptop1-home image" in log and f"to laptop1:{TOP}\n" in log and f"to laptop1:{OTHER}\n" in log, log
    assert_no_restore_key(lab, gate_line)


def test_check_diff_lists_and_changes_nothing(lab: Lab, original: dict) -> None:
    lab.ssh("laptop1", f"echo changed > {TOP}/proj/sub/deep.txt && rm {TOP}/doc.txt")
    before, keys = manifest(lab), authorized_keys(lab)
    run = restore(lab, check=True)
    assert run.rc == 0, run.stdout[-6000:]
    assert f">f+++++++++ {TOP}/doc.txt" in run.stdout and f"{TOP}/proj/sub/deep.txt" in run.stdout
    assert manifest(lab) == before and authorized_keys(lab) == keys and key_dirs(lab) == ""
    assert restore(lab).rc == 0
    after = manifest(lab)
    after.pop("proj/extra.txt", None)
    assert after == original


def test_a_failed_restore_removes_the_key(lab: Lab, original: dict) -> None:
    gate_line = gate(lab)
    # rrsync -wo refuses to run while another holds its lock on the target directory: the copy fails
    holder = subprocess.Popen(["ssh", "-F", str(lab.ssh_config), "laptop1",
                               f"flock {TOP} sh -c 'echo $$ > /tmp/rtest-flock.pid; exec sleep 120'"])
    try:
        time.sleep(2)
        run = restore(lab)
    finally:
        lab.ssh("laptop1", "kill $(cat /tmp/rtest-flock.pid)", check=False)
        holder.wait(timeout=30)
    assert run.rc != 0 and "rsync exited" in " ".join(run.failed.get("laptop1", [])), run.stdout[-4000:]
    assert_no_restore_key(lab, gate_line)


def test_a_killed_restore_leaves_a_key_that_the_cleanup_removes(lab: Lab, original: dict) -> None:
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "LAB_DIR": str(lab.dir)}
    playbook = subprocess.Popen(
        ["ansible-playbook", str(REPO_ROOT / "playbooks" / "restore.yml"), "--limit", "laptop1",
         "-e", json.dumps({"dervish_restore_paths": [*PATHS, f"{OTHER}/note.txt"]})],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while MARK not in authorized_keys(lab):
            assert playbook.poll() is None and time.monotonic() < deadline, "the key never appeared"
            time.sleep(0.1)
    finally:
        os.killpg(playbook.pid, signal.SIGKILL)
        playbook.wait()
    lines = [line for line in authorized_keys(lab).splitlines() if MARK in line]
    assert len(lines) == 2, lines   # a key per target directory, none for their common parent /home
    assert 'command="/usr/bin/rrsync -wo /home/rtest"' in lines[0] and 'command="/usr/bin/rrsync -wo /home/rtest-b"' \
        in lines[1], lines
    assert all('from="' in line and "expiry-time=" in line for line in lines)
    assert len({line.split("ssh-ed25519 ")[1].split()[0] for line in lines}) == 2   # two keys, not one twice
    # the client role's cleanup (site.yml; here only that part) removes the key of a run that is over
    cleanup = subprocess.run(["ansible-playbook", str(REPO_ROOT / "playbooks" / "site.yml"), "--limit", "laptop1",
                              "--tags", "backup_client_remove_stale_restore_keys"],
                             env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert cleanup.returncode == 0, cleanup.stdout[-4000:]
    assert MARK not in authorized_keys(lab)
