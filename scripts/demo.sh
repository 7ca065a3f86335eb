#!/usr/bin/env bash
# make demo: provision the lab, back it up, change files on clients, back up again, then show the
# status table and what each image really added on the backup drive. Runs against the lab in
# LAB_DIR (default .lab; `make lab-up` starts it), with the venv's ansible-playbook.
set -euo pipefail
REPO=$(dirname "$(dirname "$(realpath "$0")")")
LAB=$(realpath -m "${LAB_DIR:-$REPO/.lab}")
export LAB_DIR=$LAB   # inventory/lab reads it too
cd "$REPO"
on() { local host=$1; shift; ssh -F "$LAB/ssh_config" "$host" "$@"; }
step() { printf '\n=== %s\n' "$*"; }
playbook() { ansible-playbook -i inventory/lab "$@"; }

step "provision the lab (site.yml)"
playbook playbooks/lab_hosts.yml
playbook playbooks/site.yml

step "first backup (backup.yml)"
playbook playbooks/backup.yml

step "change files on the clients"
on laptop1 'mkdir -p /home/demo && head -c 2097152 /dev/urandom > /home/demo/photo.bin && date > /home/demo/notes.txt'
on laptop2 'date > /etc/dervish-demo.conf'
echo "laptop1: /home/demo/photo.bin (2 MiB, new), /home/demo/notes.txt; laptop2: /etc/dervish-demo.conf"

step "second backup (backup.yml)"
playbook playbooks/backup.yml

step "status and what each image added on the backup drive"
# The drive is mounted only while a run holds it; look at it read-only meanwhile.
on backup 'bash -s' <<'REMOTE'
set -eu
mounted=
if ! mountpoint -q /backup; then mount -o ro LABEL=BACKUPDRIVE /backup && mounted=1; fi
trap '[ -n "$mounted" ] && umount /backup' EXIT
dervish status
echo
python3 - <<'PY'
import os, re, subprocess
banks, in_bank = [], False
for line in open("/etc/dervish/master.conf"):
    if re.match(r"^bank:\s*$", line):
        in_bank = True
    elif in_bank and line.startswith(("\t", " ")) and line.strip():
        banks.append(line.strip())
    elif line.strip() and not line.startswith("#"):
        in_bank = False

def summary(path):
    keys = {}
    for line in open(path, errors="replace"):
        key, sep, value = line.partition(": ")
        if sep and not line.startswith((" ", "\t")):
            keys[key] = value.strip()
    return keys

def du_k(*paths):  # du counts an inode once: the last path's figure is what it adds to the ones before
    out = subprocess.run(["du", "-sk", *paths], capture_output=True, text=True, check=True).stdout.split("\n")
    return int(out[len(paths) - 1].split()[0])

def human(kib):
    return f"{kib} KiB" if kib < 10240 else f"{kib / 1024:.1f} MiB"

print(f"{'VAULT':14} {'IMAGE':16} {'STATUS':8} {'ON DISK':>10} {'ADDED':>10} {'RSYNC NEW':>10}  METADATA")
for bank in banks:
    for vault in sorted(os.listdir(bank)) if os.path.isdir(bank) else []:
        vdir = os.path.join(bank, vault)
        images = sorted(n for n in os.listdir(vdir) if os.path.isfile(os.path.join(vdir, n, "summary")))
        reference = None  # the image before it that rsync linked against: the last good one
        for image in images:
            s = summary(os.path.join(vdir, image, "summary"))
            here = os.path.join(vdir, image)
            alone = du_k(here)
            added = du_k(reference, here) if reference else alone
            if s.get("Status", "").split()[:1] in (["success"], ["warning"]):
                reference = here
            new = s.get("Image-new-bytes")
            new = human(int(new) // 1024) if new and new.isdigit() else "-"
            print(f"{vault:14} {image:16} {s.get('Status', '?').split()[0]:8} {human(alone):>10} {human(added):>10} "
                  f"{new:>10}  {s.get('Metadata', 'none')}")
print("\nON DISK: the image alone; ADDED: what it takes beside the good image before it (unchanged files")
print("are hard links to it); RSYNC NEW: what rsync copied. metadata/ of an image is new in every image.")
PY
REMOTE
echo
echo "The lab keeps running: ssh -F $LAB/ssh_config backup   (stop it with: make lab-down)"
