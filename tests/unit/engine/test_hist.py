"""The .hist file: Dirvish's exact format including the REFERECE typo."""

from __future__ import annotations

from datetime import datetime

from dervish_engine import hist


def test_append_writes_header_once(tmp_path):
    path = hist.hist_path(tmp_path, "default")
    hist.append(path, "20261126-122414", datetime(2026, 11, 26, 12, 24, 14), "default",
                "+15 days == 2026-12-11 12:24:14")
    hist.append(path, "20261126-122424", datetime(2026, 11, 26, 12, 24, 24), "20261126-122414",
                "+15 days == 2026-12-11 12:24:24")
    assert path.read_text() == (
        "#IMAGE\tCREATED\tREFERECE\tEXPIRES\n"
        "20261126-122414\t2026-11-26 12:24:14\tdefault\t+15 days == 2026-12-11 12:24:14\n"
        "20261126-122424\t2026-11-26 12:24:24\t20261126-122414\t+15 days == 2026-12-11 12:24:24\n")
    entries = hist.read(path)
    assert [e.image for e in entries] == ["20261126-122414", "20261126-122424"]
    assert entries[1].reference == "20261126-122414" and entries[1].expires.startswith("+15 days")


def test_empty_file_gets_header(tmp_path):
    path = tmp_path / "dirvish" / "b.hist"
    path.parent.mkdir()
    path.write_text("")
    hist.append(path, "i", datetime(2026, 1, 1), "b", "Never")
    assert path.read_text() == hist.HEADER + "i\t2026-01-01 00:00:00\tb\tNever\n"


def test_parse_tolerates_junk_and_missing(tmp_path):
    assert hist.read(tmp_path / "missing.hist") == []
    entries = hist.parse("#IMAGE\tCREATED\n\nonly-name\nx\t2026-01-01 00:00:00\tdefault\tNever\n")
    assert [(e.image, e.reference) for e in entries] == [("only-name", ""), ("x", "default")]
