"""locate: good images only, index formats, grouping by inode, dirvish-locate layout."""

from __future__ import annotations

import bz2
import gzip

from dervish_engine import locate

SUMMARY = ("vault: v\nbranch: {branch}\nImage: {name}\n\nACTION: rsync\nBackup-begin: {done}\n"
           "{complete}Status: {status}\n")


def line(inode, path, perms="-rw-r--r--", date="Nov 26 14:18"):
    return f"{inode:>9} 4 {perms} 1 root root 12 {date} {path}\n"


def make(vault, name, entries, status="success", branch="default", done="2026-11-26 10:00:00", fmt="text",
         complete=True):
    img = vault / name
    img.mkdir(parents=True)
    (img / "summary").write_text(SUMMARY.format(branch=branch, name=name, done=done, status=status,
                                                complete=f"Backup-complete: {done}\n" if complete else ""))
    data = "".join(entries).encode()
    if fmt == "gzip":
        (img / "index.gz").write_bytes(gzip.compress(data))
    elif fmt == "bzip2":
        (img / "index.bz2").write_bytes(bz2.compress(data))
    elif fmt == "text":
        (img / "index").write_bytes(data)


def test_grouping_and_layout(tmp_path):
    v = tmp_path / "v"
    (v / "dirvish").mkdir(parents=True)
    make(v, "i1", [line(1, "/src/a.txt"), line(9, "/src/dir", "drwxr-xr-x")], done="2026-11-24 10:00:00")
    make(v, "i2", [line(1, "/src/a.txt"), line(5, "/src/b.txt")], done="2026-11-25 10:00:00", fmt="gzip")
    make(v, "i3", [line(2, "/src/a.txt", date="Nov 27 09:00"), line(7, "/src/l.txt", "lrwxrwxrwx")],
         done="2026-11-26 10:00:00", fmt="bzip2")
    make(v, "failed", [line(3, "/src/a.txt")], status="error (23) -- partial transfer", done="2026-11-27 10:00:00")
    make(v, "warn", [line(2, "/src/a.txt", date="Nov 27 09:00")], status="warning (24) -- file vanished on sender",
         done="2026-11-26 11:00:00")
    make(v, "killed", [line(4, "/src/a.txt")], status="success", complete=False)
    make(v, "noindex", [], fmt=None, done="2026-11-28 10:00:00")
    make(v, "other", [line(8, "/src/a.txt")], branch="weekly", done="2026-11-30 10:00:00")
    result = locate.locate(v, "a.txt", "default")
    assert result.image_count == 4
    assert locate.render(result) == (
        "1 matches in 4 images\n"
        "/src/a.txt\n"
        "    Nov 27 09:00 warn, i3\n"
        "    Nov 26 14:18 i2, i1\n\n")
    everything = locate.locate(v, r"^[ab]\.txt$")
    assert sorted(everything.matches) == ["/src/a.txt", "/src/b.txt"]
    assert [h.image for h in everything.matches["/src/a.txt"]] == ["warn", "i3", "i2", "i1", "other"]


def test_pattern_rules():
    # dirvish-locate's "foo[^/]*$" on the path == a search for "foo" in the last component
    assert locate.compile_pattern("foo").search("xfooy") and not locate.compile_pattern("foo$").search("fooy")


def test_wrapping_and_too_vague(tmp_path):
    v = tmp_path / "v"
    names = [f"image-with-a-long-name-{i:02d}" for i in range(6)]
    for i, name in enumerate(names):
        make(v, name, [line(1, "/s/x")] + [line(100 + j, f"/s/many{j}") for j in range(100)],
             done=f"2026-11-2{i} 10:00:00")
    text = locate.render(locate.locate(v, "x$"))
    lines = text.splitlines()
    assert lines[1] == "/s/x"
    assert all(len(x) <= 78 + 30 for x in lines)
    assert lines[2].startswith("    Nov 26 14:18 image-with-a-long-name-05, ")
    assert lines[3].startswith(" " * 17 + "image-with-a-long-name-")
    vague = locate.render(locate.locate(v, "many"))
    assert vague.splitlines()[:2] == ["100 matches in 6 images", "Pattern 'many' too vague, listing paths only."]
    assert "/s/many0\n/s/many1\n" in vague


def test_a_damaged_index_is_named_and_the_other_images_are_searched(tmp_path):
    v = tmp_path / "v"
    (v / "dirvish").mkdir(parents=True)
    make(v, "good", [line(1, "/src/a.txt")], done="2026-11-24 10:00:00", fmt="gzip")
    make(v, "cut", [line(1, "/src/a.txt")], done="2026-11-25 10:00:00", fmt="gzip")
    data = (v / "cut" / "index.gz").read_bytes()
    (v / "cut" / "index.gz").write_bytes(data[: len(data) // 2])
    result = locate.locate(v, "a.txt")
    assert [h.image for h in result.matches["/src/a.txt"]] == ["good"]
    assert len(result.problems) == 1 and str(v / "cut") in result.problems[0]


def reference_search(data: bytes, rx, image: str) -> dict:
    """The per-line parse that locate did before it filtered lines by their text after the last '/'."""
    out = {}
    for raw in data.splitlines():
        m = locate._LINE_RE.match(raw.decode("utf-8", "surrogateescape"))
        if not m or m.group(3)[:1] in ("d", "l"):
            continue
        path = m.group(9)
        if rx.search(locate.decode_name(path[path.rfind("/") + 1:])):
            out.setdefault(path, []).append(locate.Hit(image, m.group(1), m.group(8)))
    return out


TRICKY = [
    line(1, "/data", perms="drwxr-xr-x"),
    line(2, "/data/report.txt"),
    line(3, "/data/report.txt.d", perms="drwxr-xr-x"),
    line(4, "/data/link\\ ->\\ x -> /srv/report.txt", perms="lrwxrwxrwx"),
    line(5, "/data/gr\\303\\274n\\ report.txt"),
    line(6, "/data/a\\\\b/report.txt", date="Jan  2  2020"),
    line(7, "relative-report.txt"),
    "        8      0 crw-rw-rw-   1 root     root       1,   3 Nov 26 14:18 /data/dev/report.txt\n",
    line(9, "/data/not-a-report"),
]


def test_the_line_filter_finds_what_the_full_parse_finds(tmp_path, monkeypatch):
    data = "".join(TRICKY * 3).encode()
    monkeypatch.setattr(locate, "CHUNK", 37)   # lines cut across chunks
    for pattern in ("report", "^report\\.txt$", "ü", "grün report", "^r", "t$", "\\.", "x", "^relative"):
        rx = locate.compile_pattern(pattern)
        result = locate.LocateResult(pattern)
        (tmp_path / "index").write_bytes(data)
        with open(tmp_path / "index", "rb") as handle:
            locate._search_index(handle, rx, "img", result)
        assert result.matches == reference_search(data, rx, "img"), pattern
    found = locate.LocateResult("report")
    with open(tmp_path / "index", "rb") as handle:
        locate._search_index(handle, locate.compile_pattern("report"), "img", found)
    assert sorted(found.matches) == ["/data/a\\\\b/report.txt", "/data/dev/report.txt",
                                     "/data/gr\\303\\274n\\ report.txt", "/data/not-a-report", "/data/report.txt",
                                     "relative-report.txt"]
