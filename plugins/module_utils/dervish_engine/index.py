"""Image index: GNU ``find <tree> -ls`` with the tree prefix replaced, as Dirvish writes it.

Format per line: ``inode blocks perms nlink owner group size Mon DD HH:MM path [-> target]``, names
escaped by find (``\\ `` for a space, ``\\n``, octal for invalid bytes). Paths below the tree start with
the client's tree path (or its alias) instead of ``<image>/tree``; the root line (first line) keeps
the real path. find runs with ``LC_ALL=C.UTF-8`` for stable dates.

Speed: the tree is split into a few subtrees listed by parallel ``find`` processes (one per CPU, at
most 4); each output is streamed through the prefix rewrite into its own gzip/bzip2 member and the
members are concatenated (multi-member gzip/bzip2 files are read by gzip, zcat, bzip2, Python and
dirvish-locate). Line order within the index is therefore find's order per subtree.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path
from typing import List

from .errors import ImageError

CHUNK = 1 << 18
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
GZIP_LEVEL = 2  # zlib 1.2.13, 5 MiB of index: level 2 ~18 ms, 475 KiB; level 3 ~22 ms, 472 KiB
MAX_WORKERS = 4
MAX_SPLIT_ENTRIES = 2000
MAX_SPLIT_DEPTH = 3


def index_file_name(mode: str) -> str:
    return {"gzip": "index.gz", "bzip2": "index.bz2"}.get(mode, "index")


def escape_path(path: str) -> str:
    """Escape a path the way ``find -ls`` prints it (enough for prefixes: backslash, space)."""
    return path.replace("\\", "\\\\").replace(" ", "\\ ")


def rewrite(chunk_lines, new_prefix: bytes, root_line_path: bytes):
    """Rewrite lines produced by ``find tree... -ls`` run inside the image directory.

    The first `` tree/`` of a line (where its path starts) becomes ``new_prefix``; the root line
    (path ``tree``) gets ``root_line_path``.
    """
    old = b" tree/"
    out = []
    for line in chunk_lines:
        pos = line.find(old)
        if pos >= 0:
            out.append(line[:pos + 1] + new_prefix + line[pos + 6:])
        elif line.endswith(b" tree\n"):
            out.append(line[:-5] + root_line_path + b"\n")
        else:
            out.append(line)
    return b"".join(out)


def rewrite_block(data: bytes, new_prefix: bytes, root_line_path: bytes) -> bytes:
    """``rewrite`` for a block of whole lines of which only the first may be the root line.

    (find prints its start point ``tree`` first, so a job's root line can only be the first line of
    its first block.) Every other line's path starts with `` tree/``, so each holds it at least once;
    when the block holds it exactly once per line, joining the pieces between the occurrences with
    the new prefix is the per-line rewrite, without a Python-level pass over ~50k lines. Anything else
    (a name containing `` tree/``, a symlink target ``tree/...``) goes line by line.
    """
    first = data.find(b"\n") + 1
    head = rewrite([data[:first]], new_prefix, root_line_path) if first else b""
    rest = data[first:]
    pieces = rest.split(b" tree/")
    if len(pieces) - 1 == rest.count(b"\n"):
        return head + (b" " + new_prefix).join(pieces)
    return head + rewrite(rest.splitlines(True), new_prefix, root_line_path)


class _Compressor:
    """One gzip/bzip2 member (or plain text) written to a file object."""

    def __init__(self, mode: str, fh):
        self.fh = fh
        if mode == "gzip":
            self.obj = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        elif mode == "bzip2":
            self.obj = bz2.BZ2Compressor(9)
        else:
            self.obj = None

    def write(self, data: bytes) -> None:
        self.fh.write(self.obj.compress(data) if self.obj is not None else data)

    def close(self) -> None:
        if self.obj is not None:
            self.fh.write(self.obj.flush())


def split_jobs(image_dir: Path, workers: int) -> List[List[bytes]]:
    """find argument lists: first job lists the top entries with ``-maxdepth 0``, the others whole subtrees.

    With one worker, or a tree too flat/too wide to split, it is the single job ``[b"tree"]``.
    """
    if workers <= 1:
        return [[b"tree"]]
    base = os.fsencode(str(image_dir))
    heads = [b"tree"]
    files: List[bytes] = []
    dirs: List[bytes] = []
    frontier = [b"tree"]
    for _depth in range(MAX_SPLIT_DEPTH):
        children: List[bytes] = []
        for rel in frontier:
            try:
                with os.scandir(os.path.join(base, rel)) as it:
                    for entry in it:
                        path = rel + b"/" + os.fsencode(entry.name)
                        (children if entry.is_dir(follow_symlinks=False) else files).append(path)
            except OSError:
                return [[b"tree"]]
            if len(files) + len(children) + len(heads) > MAX_SPLIT_ENTRIES:
                return [[b"tree"]]
        dirs = children
        if len(dirs) >= workers * 4 or not dirs:
            break
        heads.extend(dirs)
        frontier = dirs
        dirs = []
    if not dirs:
        return [[b"tree"]]
    jobs = [heads + files]
    for i in range(workers):
        group = dirs[i::workers]
        if group:
            jobs.append(group)
    return jobs


def _run_job(argv, cwd, env, out_fh, mode, new_prefix, root_line_path, result, slot):
    with tempfile.TemporaryFile() as errfile:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=errfile, env=env)
        except OSError as exc:
            result[slot] = (127, str(exc).encode())
            return
        with contextlib.suppress(OSError):  # a 1 MiB pipe lets find run ahead of the rewrite (Linux)
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        comp = _Compressor(mode, out_fh)
        rest = b""
        try:
            while True:
                data = proc.stdout.read1(CHUNK)
                if not data:
                    break
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                comp.write(rewrite_block(data[:cut], new_prefix, root_line_path))
            if rest:
                comp.write(rewrite([rest + b"\n"], new_prefix, root_line_path))
            comp.close()
        finally:
            proc.stdout.close()
            code = proc.wait()
        errfile.seek(0)
        result[slot] = (code, errfile.read())


def build_index(image_dir, tree_prefix: str, mode: str = "gzip", find: str = "find", workers=None) -> Path:
    """Write ``<image>/index[.gz|.bz2]`` for ``<image>/tree``; returns the file written.

    ``tree_prefix`` is the client tree path or its alias (the index shows it instead of the image path).
    """
    image_dir = Path(image_dir)
    if mode not in ("gzip", "bzip2", "text"):
        raise ImageError(f"unknown index mode {mode!r}")
    if not (image_dir / "tree").is_dir():
        raise ImageError(f"index of {image_dir} failed: find exit 1: no tree directory")
    target = image_dir / index_file_name(mode)
    tmp = target.with_name(target.name + ".tmp")
    new_prefix = os.fsencode(escape_path(tree_prefix.rstrip("/")) + "/")
    root_line_path = os.fsencode(escape_path(str(image_dir / "tree")))
    env = dict(os.environ, LC_ALL="C.UTF-8")
    if "TZ" not in env and os.path.exists("/etc/localtime"):
        # the same zone glibc uses when TZ is unset, but read once: unset, every -ls date re-stats
        # /etc/localtime (one extra stat per entry, ~30% of find's time)
        env["TZ"] = ":/etc/localtime"
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    jobs = split_jobs(image_dir, workers)
    results = [None] * len(jobs)
    try:
        with contextlib.ExitStack() as stack:
            outputs = [stack.enter_context(tempfile.TemporaryFile(dir=str(image_dir))) for dummy in jobs]
            threads = []
            for slot, paths in enumerate(jobs):
                extra = [b"-maxdepth", b"0"] if slot == 0 and len(jobs) > 1 else []
                argv = [os.fsencode(find)] + paths + extra + [b"-ls"]
                t = threading.Thread(target=_run_job, args=(argv, str(image_dir), env, outputs[slot], mode,
                                                            new_prefix, root_line_path, results, slot))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            for code, err in (r or (1, b"index worker failed") for r in results):
                if code != 0:
                    detail = err.decode("utf-8", "replace").strip()
                    raise ImageError(f"index of {image_dir} failed: find exit {code}: {detail}")
            with open(str(tmp), "wb") as out:
                for fh in outputs:
                    fh.seek(0)
                    shutil.copyfileobj(fh, out, 1 << 20)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    os.replace(str(tmp), str(target))
    return target
