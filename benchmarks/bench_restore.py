"""Benchmark: ``dervish restore`` of a whole tree against plain ``rsync -aHAX`` of the same tree.

Generates ~20,000 small files (0..16 KiB, three directory levels) as the tree of an image of a vault
in a scratch bank, then times, best of N with the runs interleaved and a ``sync`` before each, into a
fresh directory every time:

* ``dervish restore VAULT /data --to DIR`` (the command: master and image selection, path checks, and
  ``rsync -aHAX --numeric-ids --relative --itemize-changes``, its itemized lines read and printed);
* ``rsync -aHAX <tree>/ DIR/``.

Prints both times and the ratio with PASS/FAIL against the target (1.1). Always exits 0; not part of
the test suite.

    python benchmarks/bench_restore.py [--files 20000] [--runs 3] [--target 1.1] [--keep] [--dir DIR]
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
SUMMARY = """client: bench
tree: /data
vault: bench
branch: default
Image: {name}
Image-now: 2026-12-01 04:00:00
Expire: Never

ACTION: rsync
Backup-begin: 2026-12-01 04:00:00
Backup-complete: 2026-12-01 04:01:00
Status: success
"""


def generate(root: Path, files: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    per_leaf = 40
    count = 0
    for leaf in range(max(1, files // per_leaf)):
        d = root / f"a{leaf % 10}" / f"b{leaf // 10 % 10}" / f"c{leaf // 100}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_leaf):
            size = rng.choice((0, 100, 700, 2000, 4096, 9000, 16384))
            (d / f"file-{leaf}-{i}.dat").write_bytes(rng.randbytes(size))
            count += 1
    return count


def timed(argv: list, env=None) -> float:
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} ... failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", type=float, default=1.1)
    parser.add_argument("--dir", help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dervish-bench-restore-", dir="/var/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        vault = scratch / "bank" / "bench"
        (vault / "dirvish").mkdir(parents=True)
        image = vault / "2026-12-01_04:00"
        tree = image / "tree"
        tree.mkdir(parents=True)
        (image / "summary").write_text(SUMMARY.format(name=image.name))
        master = scratch / "master.conf"
        master.write_text(f"bank: {vault.parent}\n")
        made = generate(tree, args.files)
        print(f"tree: {made} files in {tree}")
        env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        times = {"dervish restore": [], "rsync -aHAX": []}
        for run in range(args.runs):
            target = scratch / f"dervish-{run}"
            times["dervish restore"].append(timed(
                [sys.executable, "-m", "dervish_engine", "--config", str(master), "--quiet", "restore", "bench",
                 "/data", "--to", str(target)], env))
            target = scratch / f"rsync-{run}"
            times["rsync -aHAX"].append(timed(["rsync", "-aHAX", f"{tree}/", f"{target}/"]))
            for name in (f"dervish-{run}", f"rsync-{run}"):
                shutil.rmtree(scratch / name)
        best = {name: min(values) for name, values in times.items()}
        for name, value in best.items():
            print(f"{name:18} best of {args.runs}: {value:.3f} s  (all: {', '.join(f'{v:.3f}' for v in times[name])})")
        ratio = best["dervish restore"] / best["rsync -aHAX"]
        verdict = "PASS" if ratio <= args.target else "FAIL"
        print(f"ratio dervish restore / rsync -aHAX: {ratio:.3f} (target {args.target}): {verdict}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
