"""Benchmark: what backing up from the controller costs over the engine's own work, and parallel images.

A lab of one server (``backup``, the loop-device drive) and 3 clients ``c01..c03``, each with one vault
of a generated tree, provisioned with ``site.yml`` and backed up once (full images). Then, best and median of
``--runs`` with 10% of every client's files changed before each run:

* controller overhead: ``ansible-playbook backup.yml`` wall time (no runner around it) against the sum
  of the engine's own image times, for 1 client (``--limit c01``) and 3 clients, per host (the issue's
  target: at most 2 s per host). The
  image times are the snapshot module's ``duration`` per vault where the playbook returns it, else each
  image's span on the bank (image directory born .. summary written), else its summary's whole seconds;
* parallel against serial: 3 clients with ``backup_server_max_parallel: 3`` against 1.

Prints figures, never asserts times; exits 0 unless a run failed. Not part of the test suite.

    .venv/bin/python benchmarks/bench_controller.py [--runs 3] [--net 127.0.27] [--lab-dir DIR]
                                                    [--files 2000] [--size 16384] [--keep]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from labbench import (
    DRIVE_SERVER,
    backup_args,
    change_clients,
    image_summaries,
    lab_parser,
    machine,
    make_site,
    run_plain,
    run_playbook,
    seed_clients,
    start_lab,
)


def engine_seconds(site, run, clients, source: list) -> float:
    """The sum of the engine's times for the newest image of each client's vault."""
    if run.images:
        source.append("module duration")
        return sum(float(i["duration"]) for i in run.images)
    summaries = image_summaries(site, DRIVE_SERVER)
    total = 0.0
    for c in clients:
        last = summaries[site.vault(c)][-1]
        if last["precise"] is not None:
            source.append("image span on the bank")
            total += last["precise"]
        else:
            source.append("summary seconds")
            total += last["seconds"] or 0.0
    return total


def backup(site, clients) -> tuple:
    change_clients(site, 10)
    run = run_plain(site, "backup.yml", **backup_args(site, clients))
    if run.rc != 0:
        print(run.stdout[-4000:])
        raise SystemExit(f"FAIL: backup.yml for {','.join(clients)} exited {run.rc}")
    return run


def set_parallel(site, jobs: int) -> None:
    path = site.inventory / "host_vars" / f"{DRIVE_SERVER}.yml"
    data = yaml.safe_load(path.read_text())
    data["backup_server_max_parallel"] = jobs
    path.write_text(yaml.safe_dump(data))
    run = run_playbook(site, "site.yml", limit=DRIVE_SERVER, tags="backup_server_write_configuration")
    if run.rc != 0:
        print(run.stdout[-4000:])
        raise SystemExit(f"FAIL: site.yml with backup_server_max_parallel {jobs} exited {run.rc}")


def main() -> int:
    parser = lab_parser(__doc__, files=2000, size=16384, keep="leave the lab running")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="dervish-bench-controller-") as work:
        site = make_site(Path(args.lab_dir), args.net, 1, 3, Path(work))
        start_lab(site)
        try:
            seed_clients(site, args.files, args.size)
            run = run_playbook(site, "site.yml")
            if run.rc != 0:
                print(run.stdout[-4000:])
                raise SystemExit(f"FAIL: site.yml exited {run.rc}")
            first = backup(site, site.clients)
            print(f"first backup.yml (full images of 3 x {args.files} files of {args.size} B): {first.wall:.1f}s")

            overhead = {1: [], 3: []}
            sources: list = []
            for attempt in range(args.runs):
                for n in (1, 3):
                    clients = site.clients[:n]
                    run = backup(site, clients)
                    engine = engine_seconds(site, run, clients, sources)
                    overhead[n].append((run.wall, engine))
                    print(f"run {attempt + 1}, {n} client(s): ansible-playbook backup.yml {run.wall:.2f}s, "
                          f"engine {engine:.2f}s, overhead per host {(run.wall - engine) / n:.2f}s")

            parallel = {1: [], 3: []}
            for jobs in (3, 1):
                set_parallel(site, jobs)
                for attempt in range(args.runs):
                    run = backup(site, site.clients)
                    engine = engine_seconds(site, run, site.clients, sources)
                    parallel[jobs].append((run.wall, engine))
                    print(f"run {attempt + 1}, max_parallel {jobs}: backup.yml {run.wall:.2f}s, "
                          f"engine sum {engine:.2f}s")
        finally:
            if not args.keep:
                site.lab.down()

    print(f"\nmachine: {machine()}")
    print(f"engine times from: {', '.join(sorted(set(sources)))}")
    print("controller overhead (ansible-playbook wall time as a user waits for it, minus the engine's image "
          "times; best and median of the runs):")
    for n, rows in overhead.items():
        per_host = sorted((wall - engine) / n for wall, engine in rows)
        wall, engine = min(rows)
        print(f"  {n} client(s): backup.yml {wall:.2f}s, engine sum {engine:.2f}s, overhead per host best "
              f"{per_host[0]:.2f}s, median {statistics.median(per_host):.2f}s "
              f"({'within' if statistics.median(per_host) <= 2 else 'OVER'} the 2 s per host target)")
    p3, p1 = min(parallel[3]), min(parallel[1])
    print(f"parallel: 3 clients, max_parallel 3 {p3[0]:.2f}s against max_parallel 1 {p1[0]:.2f}s "
          f"(speed-up {p1[0] / p3[0]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
