"""dirvish.conf(5) tokenizer: every construct, errors with file:line, tolerant mode."""

from __future__ import annotations

import pytest

from dervish_engine import confgrammar as g
from dervish_engine.errors import ConfigError

SAMPLE = """\
# a comment line
client: host.example.org   # trailing comment
tree:/srv/data

exclude:
\t*.tmp
    cache/   # comment after an item
\tweird\\#name
SET xdev zxfer
UNSET checksum
RESET rsync-option
\t--acls
key: value: with colons
"""


def test_every_construct():
    sts = g.parse_text(SAMPLE, "/x/default.conf")
    kinds = [(s.kind, s.key) for s in sts]
    assert kinds == [
        (g.SCALAR, "client"), (g.SCALAR, "tree"), (g.LIST, "exclude"), (g.SET, ""), (g.UNSET, ""),
        (g.RESET, "rsync-option"), (g.LIST, "rsync-option"), (g.SCALAR, "key"),
    ]
    assert sts[0].value == "host.example.org"
    assert sts[0].line == 2 and sts[0].path == "/x/default.conf"
    assert sts[1].value == "/srv/data"  # no blank after the colon, as Dirvish accepts
    assert sts[2].items == ["*.tmp", "cache/", "weird#name"]
    assert sts[2].item_lines == [6, 7, 8]
    assert sts[3].items == ["xdev", "zxfer"]
    assert sts[4].items == ["checksum"]
    assert sts[6].items == ["--acls"]
    assert sts[7].value == "value: with colons"


def test_empty_list_and_blank_file():
    assert g.parse_text("") == []
    assert g.parse_text("\n  \n# only comments\n") == []
    (st,) = g.parse_text("exclude:\n")
    assert st.kind == g.LIST and st.items == []


def test_strip_comment_escape():
    assert g.strip_comment("a # b") == "a "
    assert g.strip_comment("a \\# b # c") == "a # b "
    assert g.strip_comment("no comment") == "no comment"
    assert g.parse_text("x: " + g.escape_value("a#b"))[0].value == "a#b"


def test_indented_line_without_list_is_error():
    with pytest.raises(ConfigError) as exc:
        g.parse_text("client: a\n\tstray\n", "/etc/dervish/master.conf")
    assert str(exc.value).startswith("/etc/dervish/master.conf:2: indented line 'stray'")


def test_garbage_line_is_error_with_location():
    with pytest.raises(ConfigError) as exc:
        g.parse_text("client: a\n\nthis is not valid\n", "f.conf")
    assert exc.value.path == "f.conf" and exc.value.line == 3
    assert "cannot parse 'this is not valid'" in str(exc.value)


@pytest.mark.parametrize("text", ["SET\n", "UNSET   \n", "RESET a b\n"])
def test_directive_needs_names(text):
    with pytest.raises(ConfigError) as exc:
        g.parse_text(text, "f.conf")
    assert str(exc.value).startswith("f.conf:1:")


def test_tolerant_mode_keeps_text_lines():
    text = "Image: x\npost-client failed (3)\n\tstray\nStatus:  (255) -- \n"
    sts = g.parse_text(text, strict=False, comments=False)
    assert [(s.kind, s.key, s.value) for s in sts] == [
        (g.SCALAR, "Image", "x"), (g.TEXT, "", "post-client failed (3)"), (g.TEXT, "", "stray"),
        (g.SCALAR, "Status", "(255) --"),
    ]


def test_comments_off_keeps_hash_in_values():
    (st,) = g.parse_text("ACTION: rsync /a#b/ x\n# full comment\n", strict=False, comments=False)
    assert st.value == "rsync /a#b/ x"


def test_parse_file_missing(tmp_path):
    with pytest.raises(ConfigError) as exc:
        g.parse_file(tmp_path / "nope.conf")
    assert str(tmp_path / "nope.conf") in str(exc.value)


def test_parse_file_reads_real_file(write):
    path = write("d/default.conf", "client: a\nexclude:\n\tb\n")
    sts = g.parse_file(path)
    assert sts[0].path == str(path) and sts[1].items == ["b"]
