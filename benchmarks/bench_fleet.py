"""Benchmark: a fleet of 2 backup servers and N clients, provisioned and backed up from the controller.

For each size N (default 4 8 16) a fresh lab (lab/labctl) of hosts ``backup`` (the loop-device
drive), ``backup2`` (banks on a fixed path, no drive) and ``c01..cNN`` is started, each client assigned
to one server (alternating) with one vault of a generated tree. Then it times:

* ``site.yml`` first run (everything converges) and second run, which must report changed=0: the
  script prints the changed hosts and exits 1 if any;
* ``backup.yml`` first run (full images) and second run (incremental, after 10% of the files changed),
  with each image's own time from its summary.

and prints the growth per client: seconds per client at each size and, between sizes, the extra
seconds each added client cost. Prints figures, never asserts times (exits 0 unless a run failed or the
second ``site.yml`` changed something). Not part of the test suite; run on a quiet machine.

    .venv/bin/python benchmarks/bench_fleet.py [--clients 4 8 16] [--net 127.0.27] [--lab-dir DIR]
                                               [--files 500] [--size 8192] [--keep]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from labbench import (
    backup_args,
    change_clients,
    human,
    image_summaries,
    lab_parser,
    machine,
    make_site,
    run_playbook,
    seed_clients,
    start_lab,
)


def measure(args, clients: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dervish-bench-fleet-") as work:
        site = make_site(Path(args.lab_dir), args.net, 2, clients, Path(work))
        print(f"\n== {clients} clients on 2 servers ({', '.join(site.servers)}), lab {args.net}.x")
        up = start_lab(site)
        print(f"lab up: {up:.1f}s")
        row = {"clients": clients}
        try:
            seed_clients(site, args.files, args.size)
            for key in ("site1", "site2"):
                run = run_playbook(site, "site.yml")
                row[key] = run.wall
                names = " " + ",".join(run.changed_hosts) if key == "site2" else ""
                print(f"site.yml {key[-1]}: {run.wall:6.1f}s (playbook {run.playbook:.1f}s)  rc={run.rc}  "
                      f"changed hosts: {len(run.changed_hosts)}{names}")
                if run.rc != 0:
                    print(run.stdout[-4000:])
                    raise SystemExit(f"FAIL: site.yml {key[-1]} exited {run.rc}")
            row["site2_changed"] = run.changed_hosts
            for key in ("backup1", "backup2"):
                if key == "backup2":
                    change_clients(site, 10)
                run = run_playbook(site, "backup.yml", **backup_args(site, site.clients))
                row[key] = run.wall
                print(f"backup.yml {key[-1]}: {run.wall:6.1f}s (playbook {run.playbook:.1f}s)  rc={run.rc}  "
                      f"failed hosts: {','.join(run.failed_hosts) or 'none'}")
                if run.rc != 0:
                    print(run.stdout[-4000:])
                    raise SystemExit(f"FAIL: backup.yml {key[-1]} exited {run.rc}")
            seconds, added = [], []
            for server in site.servers:
                for vault, images in sorted(image_summaries(site, server).items()):
                    last = images[-1]
                    seconds += [i["seconds"] for i in images[-2:] if i["seconds"] is not None]
                    added.append(last["new_bytes"] or 0)
                    print(f"  {server:8} {vault:10} images {len(images)}  last {last['status']}  "
                          f"{last['seconds']}s  size {human(last['bytes'])}  added {human(last['new_bytes'])}")
            row["image_mean"] = statistics.mean(seconds) if seconds else None
            row["added_mean"] = statistics.mean(added) if added else None
        finally:
            if not args.keep:
                site.lab.down()
        return row


def main() -> int:
    parser = lab_parser(__doc__, files=500, size=8192, keep="leave the last lab running")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = [measure(args, n) for n in args.clients]

    print(f"\nmachine: {machine()}")
    print(f"{'clients':>7} {'site 1':>8} {'site 2':>8} {'backup 1':>9} {'backup 2':>9} "
          f"{'image':>6}  per client: {'site 1':>7} {'site 2':>7} {'backup 2':>8}")
    for r in rows:
        n = r["clients"]
        print(f"{n:>7} {r['site1']:>7.1f}s {r['site2']:>7.1f}s {r['backup1']:>8.1f}s {r['backup2']:>8.1f}s "
              f"{(r['image_mean'] or 0):>5.1f}s  {'':12}{r['site1'] / n:>6.2f}s {r['site2'] / n:>6.2f}s "
              f"{r['backup2'] / n:>7.2f}s")
    for a, b in zip(rows, rows[1:]):
        d = b["clients"] - a["clients"]
        growth = ", ".join(f"{label} {(b[key] - a[key]) / d:+.2f}s" for key, label in (
            ("site1", "site.yml 1"), ("site2", "site.yml 2"), ("backup1", "backup.yml 1"), ("backup2", "backup.yml 2")))
        print(f"growth {a['clients']}->{b['clients']} clients, per added client: {growth}")
    bad = [r["clients"] for r in rows if r["site2_changed"]]
    if bad:
        print(f"FAIL: the second site.yml changed something at {bad} clients")
        return 1
    print("PASS: the second site.yml changed nothing at every size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
