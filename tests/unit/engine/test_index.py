"""Index: find -ls output with the tree prefix rewritten, gzip/bzip2/text."""

from __future__ import annotations

import bz2
import gzip
import os

import pytest

from dervish_engine import index
from dervish_engine.errors import ImageError


@pytest.fixture
def image(tmp_path):
    img = tmp_path / "bank" / "v" / "img 1"
    tree = img / "tree"
    (tree / "a dir").mkdir(parents=True)
    (tree / "a dir" / "f x.txt").write_text("x")
    (tree / "tree").mkdir()
    (tree / "tree" / "inner").write_text("y")
    os.symlink("a dir/f x.txt", tree / "link")
    with open(os.path.join(os.fsencode(str(tree)), b"bad\xff"), "wb") as fh:
        fh.write(b"z")
    return img


def test_gzip_index_rewrites_prefix(image):
    path = index.build_index(image, "/home/src", "gzip")
    assert path.name == "index.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8", "surrogateescape").splitlines()
    assert lines[0].endswith(" " + index.escape_path(str(image / "tree")))
    paths = sorted(line.split(None, 10)[10] for line in lines[1:])
    assert paths == ["/home/src/a\\ dir", "/home/src/a\\ dir/f\\ x.txt", "/home/src/bad\\377",
                     "/home/src/link -> a\\ dir/f\\ x.txt", "/home/src/tree", "/home/src/tree/inner"]
    fields = lines[1].split()
    assert fields[0].isdigit() and fields[2][0] in "-dl" and len(fields) >= 11
    assert not (image / "index.gz.tmp").exists()


def test_alias_with_space_text_and_bzip2(image):
    text = index.build_index(image, "/my alias/", "text").read_text(errors="replace")
    assert "/my\\ alias/a\\ dir/f\\ x.txt" in text
    data = bz2.decompress(index.build_index(image, "/s", "bzip2").read_bytes()).decode(errors="replace")
    assert "/s/tree/inner" in data


def test_rewrite_lines():
    out = index.rewrite([b"  1 4 drwx 2 u g 4096 Nov 26 14:18 tree\n",
                         b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/x\\ tree/y -> tree/z\n"], b"/src/", b"/img/tree")
    assert out == (b"  1 4 drwx 2 u g 4096 Nov 26 14:18 /img/tree\n"
                   b"  2 4 -rw- 1 u g 1 Nov 26 14:18 /src/x\\ tree/y -> tree/z\n")


def test_missing_tree_raises(tmp_path):
    with pytest.raises(ImageError, match="find exit"):
        index.build_index(tmp_path, "/src", "gzip")
    assert not (tmp_path / "index.gz").exists() and not (tmp_path / "index.gz.tmp").exists()


def test_parallel_jobs_list_the_same_lines(tmp_path):
    img = tmp_path / "img"
    for i in range(12):
        for j in range(3):
            d = img / "tree" / f"d{i}" / f"e{j}"
            d.mkdir(parents=True)
            (d / "f").write_text("x")
    (img / "tree" / "top file").write_text("t")
    jobs = index.split_jobs(img, 3)
    assert jobs[0][0] == b"tree" and len(jobs) == 4
    single = gzip.decompress(index.build_index(img, "/s", "gzip", workers=1).read_bytes()).splitlines()
    multi = gzip.decompress(index.build_index(img, "/s", "gzip", workers=3).read_bytes()).splitlines()
    assert multi[0] == single[0] and multi[0].endswith(str(img / "tree").encode())
    assert sorted(multi) == sorted(single) and len(single) == 1 + 12 + 36 + 36 + 1
    assert index.split_jobs(img, 1) == [[b"tree"]]


@pytest.mark.parametrize("lines", [
    [b"  1 4 drwx 2 u g 4096 Nov 26 14:18 tree\n", b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/x\n"],
    [b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/x\n", b"  3 4 -rw- 1 u g 1 Nov 26 14:18 tree/a\\ b\n"],
    # root line plus a line with two " tree/": the counts alone would balance out
    [b"  1 4 drwx 2 u g 4096 Nov 26 14:18 tree\n", b"  2 4 lrwx 1 u g 1 Nov 26 14:18 tree/l -> tree/z\n"],
    [b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/x\\ tree/y\n", b"  3 4 -rw- 1 u g 1 Nov 26 14:18 tree/y\n"],
    [b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/d/a\\ tree\n", b"  3 4 -rw- 1 u g 1 Nov 26 14:18 tree/y\n"],
    [b"  2 4 -rw- 1 u g 1 Nov 26 14:18 tree/d/a\\ tree\n", b"  3 4 lrwx 1 u g 1 Nov 26 14:18 tree/l -> tree/z\n",
     b"  4 4 -rw- 1 u g 1 Nov 26 14:18 tree/m\n"],
    [b"  1 4 drwx 2 u g 4096 Nov 26 14:18 tree\n"],
    [],
])
def test_rewrite_block_is_the_per_line_rewrite(lines):
    expected = index.rewrite(lines, b"/s\\ x/", b"/img/tree")
    assert index.rewrite_block(b"".join(lines), b"/s\\ x/", b"/img/tree") == expected


def test_find_reads_the_zone_once(image, monkeypatch):
    seen = []
    real_popen = index.subprocess.Popen

    def popen(argv, **kwargs):
        seen.append(kwargs["env"])
        return real_popen(argv, **kwargs)

    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setattr(index.subprocess, "Popen", popen)
    unset = gzip.decompress(index.build_index(image, "/s", "gzip", workers=1).read_bytes())
    if os.path.exists("/etc/localtime"):
        assert seen[-1]["TZ"] == ":/etc/localtime"
    monkeypatch.setenv("TZ", "UTC")
    index.build_index(image, "/s", "gzip", workers=1)
    assert seen[-1]["TZ"] == "UTC" and seen[-1]["LC_ALL"] == "C.UTF-8"
    monkeypatch.undo()
    env = dict(os.environ, LC_ALL="C.UTF-8")
    env.pop("TZ", None)
    plain = index.subprocess.run(["find", "tree", "-ls"], cwd=str(image), env=env, capture_output=True,
                                 check=True).stdout
    assert unset == index.rewrite(plain.splitlines(True), b"/s/", os.fsencode(index.escape_path(str(image / "tree"))))
