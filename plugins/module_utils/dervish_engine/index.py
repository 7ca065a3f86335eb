"""Image index: GNU ``find <tree> -ls`` with the tree prefix replaced, as Dirvish writes it.

Format per line: ``inode blocks perms nlink owner group size Mon DD HH:MM path [-> target]``, names
escaped by find (``\\ `` for a space, ``\\n``, octal for invalid bytes). Paths below the tree start with
the client's tree path (or its alias) instead of ``<image>/tree``; the root line keeps the real path.
find runs with ``LC_ALL=C.UTF-8`` for stable dates; its output is streamed through the prefix rewrite
straight into zlib (gzip level 3) or bzip2, so the index costs one ``find`` pass.
"""

from __future__ import annotations

import bz2
import gzip
import os
import subprocess
import tempfile
from pathlib import Path

from .errors import ImageError

CHUNK = 1 << 20
GZIP_LEVEL = 3


def index_file_name(mode: str) -> str:
    return {"gzip": "index.gz", "bzip2": "index.bz2"}.get(mode, "index")


def escape_path(path: str) -> str:
    """Escape a path the way ``find -ls`` prints it (enough for prefixes: backslash, space)."""
    return path.replace("\\", "\\\\").replace(" ", "\\ ")


def _opener(mode: str, path: Path):
    if mode == "gzip":
        return gzip.open(str(path), "wb", compresslevel=GZIP_LEVEL)
    if mode == "bzip2":
        return bz2.open(str(path), "wb", compresslevel=9)
    return open(str(path), "wb")


def rewrite(chunk_lines, new_prefix: bytes, root_line_path: bytes):
    """Rewrite lines produced by ``find tree -ls`` run inside the image directory."""
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


def build_index(image_dir, tree_prefix: str, mode: str = "gzip", find: str = "find") -> Path:
    """Write ``<image>/index[.gz|.bz2]`` for ``<image>/tree``; returns the file written.

    ``tree_prefix`` is the client tree path or its alias (the index shows it instead of the image path).
    """
    image_dir = Path(image_dir)
    if mode in ("none", "", None):
        raise ImageError("index disabled")
    target = image_dir / index_file_name(mode if mode in ("gzip", "bzip2", "text") else "text")
    tmp = target.with_name(target.name + ".tmp")
    new_prefix = os.fsencode(escape_path(tree_prefix.rstrip("/")) + "/")
    root_line_path = os.fsencode(escape_path(str(image_dir / "tree")))
    env = dict(os.environ, LC_ALL="C.UTF-8")
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen([find, "tree", "-ls"], cwd=str(image_dir), stdout=subprocess.PIPE,
                                stderr=errfile, env=env)
        code, err = _stream(proc, errfile, _opener(mode, tmp), new_prefix, root_line_path)
    if code != 0:
        tmp.unlink()
        detail = err.decode("utf-8", "replace").strip()
        raise ImageError(f"index of {image_dir} failed: find exit {code}: {detail}")
    os.replace(str(tmp), str(target))
    return target


def _stream(proc, errfile, out_file, new_prefix: bytes, root_line_path: bytes):
    rest = b""
    try:
        with out_file as out:
            while True:
                data = proc.stdout.read(CHUNK)
                if not data:
                    break
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                out.write(rewrite(data[:cut].splitlines(True), new_prefix, root_line_path))
            if rest:
                out.write(rewrite([rest + b"\n"], new_prefix, root_line_path))
    finally:
        proc.stdout.close()
        code = proc.wait()
    errfile.seek(0)
    return code, errfile.read()
