"""Benchmark: an incremental ``dervish image`` against plain ``rsync -aH --link-dest`` on the same data.

Generates ~50k small files (a few directories deep) in a scratch directory, makes an initial image,
changes ~1% of the files, then times (best of N, runs interleaved) an incremental ``dervish image``
(index, log compression, hist and summary included; linked against the initial image every time) and
plain ``rsync -aH --link-dest=<initial tree>`` into a fresh directory. dervish's defaults add ``-A -X``
(ACLs, xattrs), which plain ``-aH`` does not copy, so three ratios are printed: dervish without ACLs/xattrs
vs ``rsync -aH`` and dervish defaults vs ``rsync -aHAX`` (same metadata each), and dervish defaults vs
``rsync -aH``. Each gets PASS/FAIL against the target. Always exits 0; not part of the test suite.

    python benchmarks/bench_incremental.py [--files 50000] [--runs 3] [--target 1.15] [--keep] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENGINE_PARENT = REPO / "plugins" / "module_utils"


def generate(root: Path, files: int, seed: int = 1) -> list:
    """~``files`` files of 0..16 KiB in dirs 3 levels deep; returns the file paths."""
    rng = random.Random(seed)
    paths = []
    per_leaf = 40
    leaves = max(1, files // per_leaf)
    for leaf in range(leaves):
        d = root / f"a{leaf % 10}" / f"b{leaf // 10 % 10}" / f"c{leaf // 100}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_leaf):
            size = rng.choice((0, 100, 700, 2000, 4096, 9000, 16384))
            p = d / f"file-{leaf}-{i}.dat"
            with open(p, "wb") as fh:
                fh.write(rng.randbytes(size) if hasattr(rng, "randbytes") else os.urandom(size))
            paths.append(p)
    return paths


def change(paths: list, fraction: float, seed: int = 2) -> int:
    rng = random.Random(seed)
    chosen = rng.sample(paths, max(1, int(len(paths) * fraction)))
    for p in chosen:
        with open(p, "ab") as fh:
            fh.write(b"changed\n")
    return len(chosen)


def dervish(master: Path, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), "--quiet", *args],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"dervish {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")


def timed(func) -> float:
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", type=float, default=1.15)
    parser.add_argument("--dir", help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dervish-bench-", dir="/var/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        src, bank, plain = scratch / "src", scratch / "bank", scratch / "plain"
        (bank / "bench" / "dirvish").mkdir(parents=True)
        plain.mkdir()
        master = scratch / "master.conf"
        master.write_text(f"bank:\n\t{bank}\n")
        (bank / "bench" / "dirvish" / "default.conf").write_text(f"client: localhost\ntree: {src}\n")
        t = time.perf_counter()
        paths = generate(src, args.files)
        print(f"generated {len(paths)} files in {time.perf_counter() - t:.1f}s under {src}")
        t = time.perf_counter()
        dervish(master, "image", "bench", "--image", "initial", "--init")
        print(f"initial image: {time.perf_counter() - t:.2f}s")
        changed = change(paths, 0.01)
        print(f"changed {changed} files (1%)")
        ref = bank / "bench" / "initial" / "tree"
        # vault "bench": dervish defaults (incl. -A -X); vault "noacl": UNSET acls xattrs (same metadata as -aH)
        (bank / "noacl" / "dirvish").mkdir(parents=True)
        (bank / "noacl" / "dirvish" / "default.conf").write_text(
            f"client: localhost\ntree: {src}\nUNSET acls xattrs\n")
        # same reference files (a symlinked reference would slow every --link-dest lookup down)
        subprocess.run(["cp", "-al", str(bank / "bench" / "initial"), str(bank / "noacl" / "initial")], check=True)
        shutil.copy(bank / "bench" / "dirvish" / "default.hist", bank / "noacl" / "dirvish" / "default.hist")
        times = {"dervish": [], "dervish-noacl": [], "rsync-aH": [], "rsync-aHAX": []}
        for run in range(args.runs):
            times["dervish"].append(timed(lambda run=run: dervish(
                master, "image", "bench", "--image", f"inc{run}", "--reference", "initial")))
            times["rsync-aH"].append(timed(lambda run=run: subprocess.run(
                ["rsync", "-aH", f"--link-dest={ref}", f"{src}/", str(plain / f"aH{run}")], check=True)))
            times["dervish-noacl"].append(timed(lambda run=run: dervish(
                master, "image", "noacl", "--image", f"inc{run}", "--reference", "initial")))
            times["rsync-aHAX"].append(timed(lambda run=run: subprocess.run(
                ["rsync", "-aHAX", f"--link-dest={ref}", f"{src}/", str(plain / f"aHAX{run}")], check=True)))
            print(f"run {run + 1}: " + "   ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
        best = {k: min(v) for k, v in times.items()}
        for vault in ("bench", "noacl"):
            summary = (bank / vault / "inc0" / "summary").read_text().splitlines()
            print(f"{vault}: " + next(line for line in summary if line.startswith("ACTION:")))
        print(f"best of {args.runs}: " + ", ".join(f"{k} {v:.3f}s" for k, v in best.items()))
        rows = (
            ("dervish (UNSET acls xattrs) vs rsync -aH --link-dest   [same metadata]", "dervish-noacl", "rsync-aH"),
            ("dervish (defaults, -A -X)   vs rsync -aHAX --link-dest [same metadata]", "dervish", "rsync-aHAX"),
            ("dervish (defaults, -A -X)   vs rsync -aH --link-dest   [dervish copies more]", "dervish", "rsync-aH"),
        )
        for label, ours, theirs in rows:
            ratio = best[ours] / best[theirs]
            verdict = "PASS" if ratio <= args.target else "FAIL"
            print(f"{verdict} {label}: ratio {ratio:.3f} (target <= {args.target})")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
