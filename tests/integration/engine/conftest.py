"""Fixtures for the engine integration tests: real source trees, banks and master configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENGINE_PARENT = REPO / "plugins" / "module_utils"

ODD_NAMES = [
    b"with space.txt",
    b"new\nline",
    b"bad\xffbyte",
    b"-leading-dash",
    b"--rsync-option-lookalike",
    b"tab\tname",
    b"quote'and\"dq",
    b"star*and?",
    b"percent%Y",
    "ümlaut-ß".encode(),
    b" leading space",
]


def make_tree(root: Path, files: int = 2000, rich: bool = True) -> Path:
    """Create a source tree of ``files`` regular files (+ odd names, links, ACLs, xattrs, sparse, fifo)."""
    root.mkdir(parents=True, exist_ok=True)
    broot = os.fsencode(str(root))
    per_dir = 100
    for i in range(files):
        d = os.path.join(broot, b"d%02d" % (i // per_dir), b"s%d" % (i % 3))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, b"f%05d.dat" % i), "wb") as fh:
            fh.write((b"file %d\n" % i) * (1 + i % 7))
    if not rich:
        return root
    odd = os.path.join(broot, b"odd dir")
    os.makedirs(odd, exist_ok=True)
    for name in ODD_NAMES:
        with open(os.path.join(odd, name), "wb") as fh:
            fh.write(b"odd " + name + b"\n")
    # hard links inside the source
    os.link(os.path.join(odd, b"with space.txt"), os.path.join(odd, b"hardlink to space"))
    os.link(os.path.join(broot, b"d00", b"s0", b"f00000.dat"), os.path.join(broot, b"hl-f00000"))
    # symlinks (relative, absolute, dangling)
    os.symlink(b"with space.txt", os.path.join(odd, b"link to space"))
    os.symlink(b"/etc/hostname", os.path.join(broot, b"abs-link"))
    os.symlink(b"does-not-exist", os.path.join(broot, b"dangling"))
    # sparse file: 8 MiB apparent, one block of data
    with open(os.path.join(broot, b"sparse.img"), "wb") as fh:
        fh.seek(8 << 20)
        fh.write(b"end")
    os.mkfifo(os.path.join(broot, b"fifo"))
    acl = root / "acl-file"
    acl.write_text("acl\n")
    subprocess.run(["setfacl", "-m", "u:nobody:r--", str(acl)], check=True)
    xattr = root / "xattr-file"
    xattr.write_text("xattr\n")
    subprocess.run(["setfattr", "-n", "user.dervish", "-v", "hello", str(xattr)], check=True)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


class Bank:
    """A master config with one bank under tmp_path; vaults are added with ``vault()``."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.bank = tmp_path / "bank"
        self.bank.mkdir()
        self.confdir = tmp_path / "etc"
        self.confdir.mkdir()
        self.master = self.confdir / "master.conf"
        self.runall = []
        self.master_extra = ""
        self.write_master()

    def write_master(self):
        text = f"bank:\n\t{self.bank}\n"
        if self.runall:
            text += "Runall:\n" + "".join(f"\t{r}\n" for r in self.runall)
        text += self.master_extra
        self.master.write_text(text)

    def vault(self, name, tree, extra="", branch="default", client="localhost"):
        conf = self.bank / name / "dirvish" / (f"{branch}.conf")
        conf.parent.mkdir(parents=True, exist_ok=True)
        tree_spec = str(tree).replace(" ", "\\ ")  # dirvish.conf escapes spaces in tree:
        conf.write_text(f"client: {client}\ntree: {tree_spec}\n" + textwrap.dedent(extra).lstrip("\n"))
        return self.bank / name

    def run(self, *args, check=None, env=None, timeout=120, **kw):
        cmd = [sys.executable, "-m", "dervish_engine", "--config", str(self.master), *args]
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(ENGINE_PARENT) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, check=False, **kw)
        if check is not None and proc.returncode != check:
            raise AssertionError(f"exit {proc.returncode} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def popen(self, *args, **kw):
        cmd = [sys.executable, "-m", "dervish_engine", "--config", str(self.master), *args]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ENGINE_PARENT) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def bank(tmp_path):
    return Bank(tmp_path)


@pytest.fixture
def tree_factory():
    """``make_tree(root, files=2000, rich=True)``."""
    return make_tree


@pytest.fixture
def small_tree(tmp_path):
    root = tmp_path / "src"
    return make_tree(root, files=30, rich=False)


def require(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
