"""locate matches the decoded last path component of real indexes (GNU find -ls, Dirvish's format)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dervish_engine import index, locate
from dervish_engine.errors import DervishError

ENGINE_PARENT = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
SUMMARY = ("vault: v\nbranch: default\nImage: {name}\n\nACTION: rsync\nBackup-begin: 2026-11-26 10:00:00\n"
           "Backup-complete: 2026-11-26 10:05:00\nStatus: success\n")
NAMES = [b"with space.txt", "\u00fcmlaut-\u00df.txt".encode(), b"bad\xffbyte", b"new\nline", b"back\\slash",
         b"passwd", b"bracket[", b"tab\tname"]


@pytest.fixture
def vault(tmp_path):
    v = tmp_path / "bank" / "v"
    img = v / "img1"
    tree = os.fsencode(str(img / "tree"))
    os.makedirs(os.path.join(tree, b"etc", b"pass"))
    os.makedirs(os.path.join(tree, b"d\xc3\xa9j\xc3\xa0 vu"))
    for name in NAMES:
        with open(os.path.join(tree, b"etc", name), "wb") as fh:
            fh.write(b"x")
    with open(os.path.join(tree, b"etc", b"pass", b"word"), "wb") as fh:
        fh.write(b"y")
    with open(os.path.join(tree, b"d\xc3\xa9j\xc3\xa0 vu", b"file"), "wb") as fh:
        fh.write(b"z")
    (v / "dirvish").mkdir()
    (img / "summary").write_text(SUMMARY.format(name="img1"))
    index.build_index(img, "/src", "gzip")  # real find -ls output, as Dirvish writes it
    return v


def found(vault, pattern):
    return sorted(locate.locate(vault, pattern).matches)


def test_names_with_spaces_and_utf8_are_found_as_written(vault):
    assert found(vault, "with space") == ["/src/etc/with\\ space.txt"]
    assert found(vault, "^\u00fcmlaut-\u00df") == ["/src/etc/\\303\\274mlaut-\\303\\237.txt"]
    assert found(vault, "new\nline") == ["/src/etc/new\\nline"]
    assert found(vault, "tab\tname") == ["/src/etc/tab\\tname"]
    assert found(vault, r"back\\slash") == ["/src/etc/back\\\\slash"]
    assert found(vault, "^bad.byte$") == ["/src/etc/bad\\377byte"]
    assert found(vault, "^file$") == ["/src/d\\303\\251j\\303\\240\\ vu/file"]


def test_the_pattern_matches_only_the_last_component(vault):
    assert found(vault, "pass") == ["/src/etc/passwd"]  # not /src/etc/pass/word through "pass/"
    assert found(vault, "^word") == ["/src/etc/pass/word"]
    assert found(vault, "^etc") == []  # a directory name is not the last component of any file
    assert found(vault, "ss$") == []  # "$" anchors at the end of the name (passwd does not end in ss)


@pytest.mark.parametrize("pattern, message", [
    ("", "empty pattern"),
    ("etc/pass", "contains '/'"),
    ("[", "invalid pattern '\\['"),
])
def test_patterns_that_cannot_mean_a_name_are_errors(vault, pattern, message):
    with pytest.raises(DervishError, match=message):
        locate.locate(vault, pattern)


def test_no_python_warning_for_odd_sets(vault):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert found(vault, "[[]") == ["/src/etc/bracket["]


def test_locate_command_errors_are_one_line(vault, tmp_path):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{vault.parent}\n")
    env = dict(os.environ, PYTHONPATH=str(ENGINE_PARENT))
    for pattern in ("", "[", "a/b"):
        proc = subprocess.run([sys.executable, "-W", "default", "-m", "dervish_engine", "--config", str(master),
                               "locate", "v", pattern], capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert proc.returncode == 2 and proc.stdout == "", (pattern, proc.stdout, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Warning" not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dervish_engine", "--config", str(master), "locate", "v",
                           "\u00fcmlaut"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0 and "/src/etc/\\303\\274mlaut-\\303\\237.txt" in proc.stdout
