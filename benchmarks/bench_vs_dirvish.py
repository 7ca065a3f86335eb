"""Benchmark: dervish against Dirvish 1.2.1, rsnapshot and the raw tools, phase by phase, in one run.

Generates a tree (default 20,000 files, about 16 KiB each) and nine generated days of change (1% of the
files rewritten, 0.5% new, 0.5% deleted, 50 logs appended to, 10 of them rotated), then, on each day
and with the tools taking turns at going first:

* plain ``rsync -aH --delete`` (day 0) and ``rsync -aH --delete --link-dest=<yesterday>`` into a new
  directory (the baseline of Dirvish and rsnapshot), and the same with ``-aHAX`` (dervish copies ACLs
  and xattrs; its baseline);
* Dirvish 1.2.1 (Debian's ``dirvish``: ``--init`` on day 0, then ``--vault``), gzip index;
* dervish (``dervish image``, defaults; from a compiled copy of the engine run by /usr/bin/python3,
  as the server's installed command runs it);
* rsnapshot (``rsnapshot daily``, ``link_dest 1``), when installed.

Then, over the ten images: locate a name with ``dirvish-locate`` and ``dervish locate`` against
``find <the ten trees> -name`` (median of --runs), and expire the three oldest images one at a time
with ``dirvish-expire`` and ``dervish expire`` against ``rm -rf`` of a baseline image.

Everything lives on a tmpfs (``--dir``, default under /dev/shm): on a VM whose disk has an I/O rate
limit and whose page cache is reclaimed within seconds, a disk measures the limit, not the tools.
Prints the times and the ratios of issue 10's table with the targets. Always exits 0; not a test.

    python benchmarks/bench_vs_dirvish.py [--files 20000] [--days 9] [--runs 5] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from engine_copy import SERVER_PYTHON, compiled_engine

DIRVISH, DIRVISH_LOCATE, DIRVISH_EXPIRE = "/usr/sbin/dirvish", "dirvish-locate", "/usr/sbin/dirvish-expire"
PAST_EXPIRY = "Expire: +1 day == 2020-01-02 00:00:00"


def generate(root: Path, files: int, rng: random.Random) -> None:
    for number in range(files):
        path = root / f"d{number % 25:02d}" / f"s{number // 25 % 20:02d}" / f"file-{number}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 33 * 1024)))
    logs = root / "var" / "log"
    logs.mkdir(parents=True)
    for number in range(50):
        (logs / f"app{number}.log").write_bytes(rng.randbytes(64 * 1024))


def change_a_day(root: Path, rng: random.Random, day: int) -> None:
    files = sorted(p for p in root.glob("d*/s*/*.dat"))
    count = len(files)
    for path in rng.sample(files, count // 100):                      # rewritten
        path.write_bytes(rng.randbytes(max(1, path.stat().st_size)))
    for path in rng.sample(files, count // 200):                      # deleted
        path.unlink(missing_ok=True)
    for number in range(count // 200):                                # new
        path = root / f"d{number % 25:02d}" / "new" / f"day{day}-{number}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 33 * 1024)))
    logs = root / "var" / "log"
    for number in range(50):                                          # appended
        with open(logs / f"app{number}.log", "ab") as handle:
            handle.write(rng.randbytes(4096))
    for number in range(10):                                          # rotated (dateext)
        log = logs / f"app{number}.log"
        log.rename(logs / f"app{number}.log-day{day}")
        log.write_bytes(b"")


def timed(argv, env=None, cwd=None) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 24):
        raise SystemExit(f"{' '.join(map(str, argv[:4]))} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


class Tools:
    """Each tool's bank and its commands for one day's image, locate and expire."""

    def __init__(self, scratch: Path, source: Path, python: str):
        self.scratch, self.source = scratch, source
        self.etc = scratch / "etc-dirvish"           # Dirvish reads /etc/dirvish: bind-mounted privately
        self.dirvish_bank = scratch / "dirvish-bank"
        self.dervish_bank = scratch / "dervish-bank"
        for bank in (self.dirvish_bank, self.dervish_bank):
            conf = bank / "v" / "dirvish" / "default.conf"
            conf.parent.mkdir(parents=True)
            conf.write_text(f"client: localhost\ntree: {source}\nindex: gzip\n")
        self.etc.mkdir()
        (self.etc / "master.conf").write_text(f"bank:\n\t{self.dirvish_bank}\nimage-default: %Y%m%d-%H%M%S\n"
                                              "expire-default: never\n")
        self.dervish_master = scratch / "dervish-master.conf"
        self.dervish_master.write_text(f"bank:\n\t{self.dervish_bank}\nimage-default: %Y%m%d-%H%M%S\n"
                                       "expire-default: never\n")
        self.env = compiled_engine(scratch / "lib", python)
        self.python = python
        self.rsnapshot_conf = scratch / "rsnapshot.conf"
        self.rsnapshot_root = scratch / "rsnapshot"
        self.rsnapshot_conf.write_text(
            "config_version\t1.2\n"
            f"snapshot_root\t{self.rsnapshot_root}/\n"
            "cmd_rsync\t/usr/bin/rsync\n"
            "link_dest\t1\n"
            "retain\tdaily\t30\n"
            f"lockfile\t{scratch}/rsnapshot.pid\n"
            f"backup\t{source}/\tlocalhost/\n")
        if not ETC_DIRVISH.exists():
            ETC_DIRVISH.mkdir()                      # a mount point only (Debian's dirvish ships it)

    def dirvish(self, *argv: str) -> list:
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/dirvish && exec "$@"', str(self.etc), *argv]

    def dervish(self, *argv: str) -> list:
        return [self.python, "-m", "dervish_engine", "--config", str(self.dervish_master), "--quiet", *argv]

    def image(self, tool: str, day: int) -> float:
        name = f"day{day}"
        previous = self.scratch / tool / f"day{day - 1}"
        if tool in ("rsync -aH", "rsync -aHAX"):
            flags = "-aH" if tool == "rsync -aH" else "-aHAX"
            link = [f"--link-dest={previous}"] if day else []
            return timed(["rsync", flags, "--delete", *link, f"{self.source}/", str(self.scratch / tool / name)])
        if tool == "Dirvish":
            return timed(self.dirvish(DIRVISH, "--vault", "v", "--image", name, *(["--init"] if not day else [])))
        if tool == "dervish":
            return timed(self.dervish("image", "v", "--image", name), env=self.env)
        if tool == "rsnapshot":
            return timed(["rsnapshot", "-c", str(self.rsnapshot_conf), "daily"])
        raise ValueError(tool)

    def image_trees(self, tool: str, days: int) -> list:
        bank = self.dirvish_bank if tool == "Dirvish" else self.dervish_bank
        return [bank / "v" / f"day{day}" / "tree" for day in range(days)]


ETC_DIRVISH = Path("/etc/dirvish")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--days", type=int, default=9, help="generated days of change after the full image")
    parser.add_argument("--runs", type=int, default=5, help="runs of each locate (median)")
    parser.add_argument("--dir", help="scratch directory (default: a new one under /dev/shm, a tmpfs)")
    parser.add_argument("--python", default=SERVER_PYTHON, help="the interpreter that runs dervish")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    if not os.path.exists(DIRVISH) or shutil.which(DIRVISH_LOCATE) is None:
        print("Dirvish is not installed (apt install dirvish): nothing to compare against")
        return 0
    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dervish-bench-dirvish-", dir="/dev/shm"))
    scratch.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    try:
        source = scratch / "source"
        generate(source, args.files, rng)
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
        print(f"tree: {args.files} files + 50 logs, {size / 2**20:.0f} MiB, in {source}; {args.days} days of change; "
              f"dervish runs with {args.python}")
        tools = Tools(scratch, source, args.python)
        names = ["rsync -aH", "rsync -aHAX", "Dirvish", "dervish"]
        names += ["rsnapshot"] if shutil.which("rsnapshot") else []
        for name in names[:2]:
            (scratch / name).mkdir()
        times = {name: [] for name in names}
        for day in range(args.days + 1):
            if day:
                change_a_day(source, rng, day)
            order = names[day % len(names):] + names[:day % len(names)]
            for name in order:
                subprocess.run(["sync"], check=False)
                times[name].append(tools.image(name, day))
            print(f"day {day}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in names), flush=True)

        # locate one name across the images (every tool's index/trees hold the same files)
        pattern = "file-1234.dat"
        count = args.days + 1
        finds = [str(tree) for tree in tools.image_trees("dervish", count)]
        locate = {"find": [], "Dirvish": [], "dervish": []}
        for run in range(args.runs):
            for name in (list(locate) if run % 2 == 0 else list(reversed(locate))):
                if name == "find":
                    locate[name].append(timed(["find", *finds, "-name", pattern]))
                elif name == "Dirvish":
                    locate[name].append(timed(tools.dirvish(DIRVISH_LOCATE, "v", re.escape(pattern) + "$")))
                else:
                    locate[name].append(timed(tools.dervish("locate", "v", re.escape(pattern) + "$"), env=tools.env))
        locate_median = {name: statistics.median(values) for name, values in locate.items()}

        # expire the three oldest images one at a time (their summaries say they expired in 2020)
        expire = {"rm -rf": [], "Dirvish": [], "dervish": []}
        for day in range(min(3, count - 1)):
            for bank in (tools.dirvish_bank, tools.dervish_bank):
                summary = bank / "v" / f"day{day}" / "summary"
                kept = [line for line in summary.read_text().splitlines() if not line.startswith("Expire:")]
                summary.write_text("\n".join(kept + [PAST_EXPIRY]) + "\n")
            for name in (list(expire) if day % 2 == 0 else list(reversed(expire))):
                subprocess.run(["sync"], check=False)
                if name == "rm -rf":
                    expire[name].append(timed(["rm", "-rf", str(scratch / "rsync -aH" / f"day{day}")]))
                elif name == "Dirvish":
                    expire[name].append(timed(tools.dirvish(DIRVISH_EXPIRE, "--vault", "v")))
                else:
                    expire[name].append(timed(tools.dervish("expire", "--vault", "v"), env=tools.env))
            for bank in (tools.dirvish_bank, tools.dervish_bank):
                if (bank / "v" / f"day{day}").exists():
                    raise SystemExit(f"{bank}/v/day{day} was not expired")
        expire_median = {name: statistics.median(values) for name, values in expire.items()}

        full = {name: values[0] for name, values in times.items()}
        incremental = {name: statistics.median(values[1:]) for name, values in times.items() if len(values) > 1}
        print()
        print("| phase | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        print("| full image (s) | " + " | ".join(f"{full[n]:.2f}" for n in names) + " |")
        print("| incremental image, median (s) | " + " | ".join(f"{incremental[n]:.2f}" for n in names) + " |")
        print(f"| locate across {count} images, median (s) | find {locate_median['find']:.3f} | | "
              f"{locate_median['Dirvish']:.3f} | {locate_median['dervish']:.3f} |" + " |" * (len(names) - 4))
        print(f"| expire one image, median (s) | rm -rf {expire_median['rm -rf']:.3f} | | "
              f"{expire_median['Dirvish']:.3f} | {expire_median['dervish']:.3f} |" + " |" * (len(names) - 4))
        print()
        rows = [
            ("full image", "Dirvish", full["Dirvish"], "rsync -aH", full["rsync -aH"], None),
            ("full image", "dervish", full["dervish"], "rsync -aH", full["rsync -aH"], None),
            ("full image", "dervish", full["dervish"], "rsync -aHAX", full["rsync -aHAX"], 1.05),
            ("incremental image", "Dirvish", incremental["Dirvish"], "rsync -aH --link-dest",
             incremental["rsync -aH"], None),
            ("incremental image", "dervish", incremental["dervish"], "rsync -aH --link-dest", incremental["rsync -aH"],
             None),
            ("incremental image", "dervish", incremental["dervish"], "rsync -aHAX --link-dest",
             incremental["rsync -aHAX"], 1.10),
            ("incremental image", "dervish", incremental["dervish"], "Dirvish", incremental["Dirvish"], 1.0),
            ("locate", "Dirvish", locate_median["Dirvish"], "find", locate_median["find"], None),
            ("locate", "dervish", locate_median["dervish"], "find", locate_median["find"], 0.3),
            ("expire one image", "Dirvish", expire_median["Dirvish"], "rm -rf", expire_median["rm -rf"], None),
            ("expire one image", "dervish", expire_median["dervish"], "rm -rf", expire_median["rm -rf"], 1.05),
        ]
        if "rsnapshot" in names:
            rows.insert(2, ("full image", "rsnapshot", full["rsnapshot"], "rsync -aH", full["rsync -aH"], None))
            rows.insert(6, ("incremental image", "rsnapshot", incremental["rsnapshot"], "rsync -aH --link-dest",
                            incremental["rsync -aH"], None))
        print("| phase | tool | against | ratio | target |")
        print("|---|---|---|---|---|")
        for phase, tool, value, base, base_value, target in rows:
            verdict = "" if target is None else (f"{'PASS' if value / base_value <= target else 'FAIL'} "
                                                 f"(at most {target})")
            print(f"| {phase} | {tool} | {base} | {ratio(value, base_value)} | {verdict} |")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
