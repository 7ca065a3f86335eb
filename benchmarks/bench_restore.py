"""Benchmark: ``dervish restore`` of a whole tree against plain ``rsync -aHAX`` of the same tree.

Generates ~20,000 small files (0..16 KiB, three directory levels) as the tree of an image of a vault
in a scratch bank, then times, median of N with the runs interleaved (alternating which goes first),
a ``sync`` and the source tree read into the page cache before each, into a fresh directory every time
(under ``--targets``, a tmpfs by default):

* ``dervish restore VAULT /data --to DIR`` (the command, run from a compiled copy of the engine as a
  server has it: master and image selection, path checks, and
  ``rsync -aHAX --numeric-ids --relative --itemize-changes``, its itemized lines read and printed);
* ``rsync -aHAX <tree>/ DIR/``.

Prints both times and the ratio with PASS/FAIL against the target (1.1). Always exits 0; not part of
the test suite.

    python benchmarks/bench_restore.py [--files 20000] [--runs 6] [--target 1.1] [--keep] [--dir DIR]
                                       [--targets DIR] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from engine_copy import SERVER_PYTHON, compiled_engine

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


def warm(tree: Path) -> None:
    """Read the whole tree (data and metadata) into the page cache: this VM's DAMON reclaim empties it
    within seconds, and a cold read from disk otherwise decides both times."""
    subprocess.run(f"find {tree} -type f -print0 | xargs -0 cat > /dev/null; getfattr -R -d -m - {tree} "
                   f"> /dev/null 2>&1; true", shell=True, check=False)


def timed(argv: list, env=None, tree: Path | None = None) -> float:
    subprocess.run(["sync"], check=False)
    if tree is not None:
        warm(tree)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} ... failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--target", type=float, default=1.1)
    parser.add_argument("--dir", help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--python", default=SERVER_PYTHON,
                        help="the interpreter that runs dervish (default: the system's /usr/bin/python3, which the "
                             "server's installed dervish command runs with; a venv's starts slower)")
    parser.add_argument("--targets", default="/dev/shm",
                        help="where the restored copies go (default: /dev/shm, a tmpfs: on a VM whose disk has an "
                             "I/O rate limit, copies onto the disk measure the limit, not the tools)")
    args = parser.parse_args()

    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dervish-bench-restore-", dir="/var/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    targets = Path(tempfile.mkdtemp(prefix="dervish-bench-restore-", dir=args.targets))
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
        print(f"tree: {made} files in {tree}; dervish runs with {args.python}")
        env = compiled_engine(scratch / "lib", args.python)
        commands = {
            "dervish restore": lambda target: [args.python, "-m", "dervish_engine", "--config", str(master),
                                               "--quiet", "restore", "bench", "/data", "--to", str(target)],
            "rsync -aHAX": lambda target: ["rsync", "-aHAX", f"{tree}/", f"{target}/"],
        }
        times = {name: [] for name in commands}
        for run in range(args.runs):
            # the two alternate which goes first; the copy before is removed and written back before each
            for name in (list(commands) if run % 2 == 0 else list(reversed(commands))):
                target = targets / "target"
                times[name].append(timed(commands[name](target), env, tree))
                shutil.rmtree(target)
                subprocess.run(["sync"], check=False)
                time.sleep(1)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, values in times.items():
            print(f"{name:18} median of {args.runs}: {medians[name]:.3f} s  best {min(values):.3f} s  "
                  f"(all: {', '.join(f'{v:.3f}' for v in values)})")
        ratio = medians["dervish restore"] / medians["rsync -aHAX"]
        verdict = "PASS" if ratio <= args.target else "FAIL"
        print(f"ratio dervish restore / rsync -aHAX (medians): {ratio:.3f} (target {args.target}): {verdict}")
    finally:
        shutil.rmtree(targets, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
