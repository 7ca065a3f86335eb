"""Benchmark: bare-metal restore of the lab's system disk, wall time by phase, and its copy against plain rsync.

A lab (the usual hosts plus vm1, which runs from its own copy of lab/bootdisk.sh's 1 GiB disk: /boot, /,
swap, /data), provisioned with ``site.yml`` and vm1 backed up with ``backup.yml``. Then ``--runs`` times,
each onto a fresh blank disk of the same size attached to the server:

* ``bare_metal_restore.yml`` for vm1: its wall time (around ansible-playbook) and the ``disk_restore``
  module's own phases (partition, mkfs, copy, boot loader, ...);
* the raw tools in the same run, on the server, onto another fresh disk: ``sfdisk`` of the saved dump,
  ``mkfs.ext4`` of the three filesystems, and ``rsync -aHAX`` of each vault's newest tree into its
  filesystem, timed per step (the copy's reference: the issue asks that the copy run at the disk's speed).

Both read the trees with the page cache dropped first (``/proc/sys/vm/drop_caches``: the whole machine's).

Prints the figures and the copy ratio; never asserts times. Not part of the test suite.

    .venv/bin/python benchmarks/bench_bare_metal.py [--runs 3] [--net 127.0.28] [--lab-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labbench import REPO, machine  # also puts tests/ on the path
from sysdisk import HOST, VAULTS, sysdisk_inventory, sysdisk_lab

from lab import Lab
from playbooks import run_playbook

BANK = "/backup/dervish"
DISK = "bench-blank"

RAW = r"""set -eu
dev=$1 dump=$2; shift 2
t() { s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "$e - $s" | bc; }
sed -e '/^device:/d' -e "s#^/dev/[^ ]*p\([0-9]\) :#$dev""p\1 :#" "$dump" > /tmp/bench-dump
nodes() {  # as the engine does without udev: each partition's node from sysfs
  for n in 1 2 3 4; do
    [ -b "${dev}p$n" ] || mknod "${dev}p$n" b $(tr ':' ' ' < "/sys/class/block/$(basename "$dev")p$n/dev")
  done
}
table() { sfdisk -q --wipe always "$dev" < /tmp/bench-dump > /dev/null; partx -a "$dev" 2>/dev/null || true; nodes; }
echo "partition $(t table)"
s=$(date +%s.%N)
mkfs.ext4 -q -F ${dev}p1; mkfs.ext4 -q -F ${dev}p2; mkswap ${dev}p3 >/dev/null; mkfs.ext4 -q -F ${dev}p4
echo "mkfs $(echo "$(date +%s.%N) - $s" | bc)"
# the new disk mounted as the restore mounts it (/, then /boot and /data in it), the trees copied one after
# the other with nothing written back in between, as the restore's copy phase does
mkdir -p /mnt/bench-raw
mount ${dev}p2 /mnt/bench-raw
mkdir -p /mnt/bench-raw/boot /mnt/bench-raw/data
mount ${dev}p1 /mnt/bench-raw/boot
mount ${dev}p4 /mnt/bench-raw/data
copy=0
while [ $# -gt 0 ]; do
  where=$1 tree=$2; shift 2
  copy=$(echo "$copy + $(t rsync -aHAX --numeric-ids "$tree/" "/mnt/bench-raw$where/")" | bc)
done
umount -R /mnt/bench-raw
echo "copy $copy"
"""


def cold_cache() -> None:
    """Both sides read the image trees from the drive, not from the page cache (what is cached when would
    otherwise decide the copy's figure: this VM's DAMON reclaim empties the cache within seconds anyway)."""
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def fresh_disk(vm: Lab, size: int) -> str:
    vm.labctl("disk-detach", DISK, check=False)
    return vm.labctl("disk-attach", vm.server, DISK, str(size)).stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--net", default="127.0.28", help="lab address range (first three octets)")
    parser.add_argument("--lab-dir", default=str(REPO / ".lab-bench-bm"))
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    base = Lab(dir=Path(args.lab_dir), net=args.net)
    was_up = base.is_up()
    vm = sysdisk_lab(base)
    try:
        with tempfile.TemporaryDirectory(prefix="dervish-bench-bm-") as work:
            inventory = sysdisk_inventory(Path(work))
            for playbook, limit in (("site.yml", None), ("backup.yml", HOST)):
                run = run_playbook(vm, playbook, inventory=inventory, limit=limit)
                if run.rc != 0:
                    print(run.stdout[-4000:])
                    raise SystemExit(f"FAIL: {playbook} exited {run.rc}")
            size = (vm.dir / f"{HOST}-sysdisk.img").stat().st_size
            used = vm.ssh(HOST, "df --output=used -B1M / /boot /data | tail -n +2").stdout.split()
            print(f"{HOST}: a {size // 2**20} MiB disk, {sum(int(u) for u in used)} MiB in /, /boot, /data")
            dervish, raw = [], []
            for attempt in range(args.runs):
                device = fresh_disk(vm, size)
                cold_cache()
                start = time.perf_counter()
                run = run_playbook(vm, "bare_metal_restore.yml", inventory=inventory, extravars={
                    "dervish_bare_metal_client": HOST, "dervish_bare_metal_device": device,
                    "dervish_bare_metal_confirm": device})
                wall = time.perf_counter() - start
                if run.rc != 0:
                    print(run.stdout[-4000:])
                    raise SystemExit(f"FAIL: bare_metal_restore.yml exited {run.rc}")
                phases = next(r["phases"] for r in run.results if isinstance(r, dict) and "phases" in r)
                dervish.append((wall, phases))
                print(f"run {attempt + 1}: bare_metal_restore.yml {wall:.1f}s; module phases: "
                      + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))

                device = fresh_disk(vm, size)
                vm.ssh(vm.server, "mount LABEL=BACKUPDRIVE /backup")
                try:
                    trees = []
                    for vault, mount_point in sorted(VAULTS.items(), key=lambda item: len(item[1])):
                        newest = vm.ssh(vm.server, f"cd {BANK}/{vault} && ls -d */summary | tail -1").stdout
                        trees += [mount_point.rstrip("/") or "/", f"{BANK}/{vault}/{newest.split('/')[0]}/tree"]
                    root = next(v for v, m in VAULTS.items() if m == "/")
                    dump_dir = f"{BANK}/{root}/$(cd {BANK}/{root} && ls -d */summary | tail -1 | cut -d/ -f1)"
                    cold_cache()   # (a lab host's /proc/sys is read-only: from here)
                    out = vm.ssh(vm.server, f"dump=$(ls {dump_dir}/metadata/sfdisk/*.dump | head -1); "
                                            f"bash -s {device} \"$dump\" {' '.join(trees)} <<'EOF'\n{RAW}EOF").stdout
                finally:
                    vm.ssh(vm.server, "umount /backup")
                steps = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.strip()}
                raw.append(steps)
                print(f"run {attempt + 1}: raw tools: " + ", ".join(f"{k} {v:.2f}s" for k, v in steps.items()))
            vm.labctl("disk-detach", DISK, check=False)
    finally:
        if not args.keep and not was_up:
            vm.down()

    print(f"\nmachine: {machine()}")
    print("medians over the runs:")
    print(f"  bare_metal_restore.yml wall: {statistics.median(wall for wall, phases in dervish):.1f}s")
    for phase in dervish[0][1]:
        print(f"  phase {phase}: {statistics.median(phases[phase] for wall, phases in dervish):.2f}s")
    for step in raw[0]:
        print(f"  raw {step}: {statistics.median(r[step] for r in raw):.2f}s")
    copy = statistics.median(phases["copy"] for wall, phases in dervish)
    raw_copy = statistics.median(r["copy"] for r in raw)
    print(f"copy phase / plain rsync -aHAX of the same trees: {copy:.1f}s / {raw_copy:.1f}s = {copy / raw_copy:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
