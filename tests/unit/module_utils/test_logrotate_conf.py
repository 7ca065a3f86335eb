"""Unit tests for plugins/module_utils/logrotate_conf.py (parser/editor of logrotate configuration)."""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.dervish.backup.plugins.module_utils import logrotate_conf as lc

# Verbatim copy of Debian 12's /etc/logrotate.conf (logrotate 3.21.0-1).
DEBIAN12 = """\
# see "man logrotate" for details

# global options do not affect preceding include directives

# rotate log files weekly
weekly

# keep 4 weeks worth of backlogs
rotate 4

# create new (empty) log files after rotating old ones
create

# use date as a suffix of the rotated file
#dateext

# uncomment this if you want your log files compressed
#compress

# packages drop log rotation information into this directory
include /etc/logrotate.d

# system-specific logs may also be configured here.
"""

# RHEL 6 / CentOS 6 style: dateext already on, wtmp/btmp blocks in the main file.
RHEL6 = """\
# see "man logrotate" for details
# rotate log files weekly
weekly

# keep 4 weeks worth of backlogs
rotate 4

# create new (empty) log files after rotating old ones
create

# use date as a suffix of the rotated file
dateext

# uncomment this if you want your log files compressed
#compress

# RPM packages drop log rotation information into this directory
include /etc/logrotate.d

# no packages own wtmp and btmp -- we'll rotate them here
/var/log/wtmp {
    monthly
    create 0664 root utmp
\tminsize 1M
    rotate 1
}

/var/log/btmp {
    missingok
    monthly
    create 0600 root utmp
    rotate 1
}

# system-specific logs may be also be configured here.
"""

# SUSE (SLES 11/12) style: dateext on, bzip2, a commented-out block.
SUSE = """\
# see "man logrotate" for details
# rotate log files weekly
weekly

# keep 4 weeks worth of backlogs
rotate 4

# create new (empty) log files after rotating old ones
create

# use date as a suffix of the rotated file
dateext

# uncomment this if you want your log files compressed
#compress

# comment these to switch compression to use gzip or another
# compression scheme
compresscmd /usr/bin/bzip2
uncompresscmd /usr/bin/bunzip2

# former versions had to have the compresscommand set accordingly
#compressext .bz2

# RPM packages drop log rotation information into this directory
include /etc/logrotate.d

# no packages own wtmp and btmp -- we'll rotate them here
#/var/log/wtmp {
#    monthly
#    create 0664 root utmp
#    rotate 1
#}

# system-specific logs may be also be configured here.
"""

# A main file with blocks only, no include; scripts mention dateext; one block opts out.
BLOCKS_ONLY = """\
compress
/var/log/app/*.log /var/log/app/extra.log {
    daily
    rotate 7
    postrotate
        # dateext would be wrong here; nodateext too
        echo dateext > /dev/null
        nodateext
    endscript
}
"/var/log/with space.log"
/var/log/other.log
{
    nodateext
    prerotate
        test -x /usr/bin/foo && /usr/bin/foo dateext
    endscript
}
"""

# Debian /etc/logrotate.d patterns (rsyslog, nginx-ish, apt) for included directories.
D_RSYSLOG = """\
/var/log/syslog
/var/log/mail.info
/var/log/mail.log
/var/log/debug
/var/log/messages
{
\trotate 4
\tweekly
\tmissingok
\tnotifempty
\tcompress
\tdelaycompress
\tsharedscripts
\tpostrotate
\t\t/usr/lib/rsyslog/rsyslog-rotate
\tendscript
}
"""

D_NGINX = """\
/var/log/nginx/*.log {
\tdaily
\tmissingok
\trotate 14
\tcompress
\tnodateext
\tdelaycompress
\tnotifempty
\tcreate 0640 www-data adm
\tsharedscripts
\tprerotate
\t\tif [ -d /etc/logrotate.d/httpd-prerotate ]; then \\
\t\t\trun-parts /etc/logrotate.d/httpd-prerotate; \\
\t\tfi \\
\tendscript
\tpostrotate
\t\tinvoke-rc.d nginx rotate >/dev/null 2>&1
\tendscript
}
"""

D_GLOBAL_NODATEEXT = """\
# an included file that switches dateext off for everything after it
nodateext
/var/log/legacy.log {
    rotate 2
}
"""


def test_parse_debian12_classifies_lines():
    parsed = lc.parse(DEBIAN12)
    kinds = {ln.text: ln.kind for ln in parsed.lines}
    assert kinds["weekly"] == lc.DIRECTIVE
    assert kinds["#dateext"] == lc.COMMENT
    assert kinds["include /etc/logrotate.d"] == lc.DIRECTIVE
    assert [ln.value for ln in parsed.includes()] == ["/etc/logrotate.d"]
    assert parsed.blocks == []
    assert parsed.lines[parsed.first_boundary()].text == "include /etc/logrotate.d"


def test_parse_blocks_scripts_and_multiline_paths():
    parsed = lc.parse(BLOCKS_ONLY)
    assert [b.patterns for b in parsed.blocks] == [
        ["/var/log/app/*.log", "/var/log/app/extra.log"],
        ["/var/log/with space.log", "/var/log/other.log"],
    ]
    # Words inside scripts are never directives.
    script_text = [ln.text.strip() for ln in parsed.lines if ln.kind == lc.SCRIPT]
    assert "nodateext" in script_text and "echo dateext > /dev/null" in script_text
    nodateext = [ln for ln in parsed.lines if ln.kind == lc.DIRECTIVE and ln.key == "nodateext"]
    assert len(nodateext) == 1 and nodateext[0].number == 14 and nodateext[0].block == 1
    assert parsed.first_boundary() == 1


def test_parse_rejects_unterminated_script_and_stray_brace():
    with pytest.raises(lc.LogrotateConfError, match="postrotate.*endscript"):
        lc.parse("/var/log/x {\n postrotate\n  echo; endscript\n}\n")
    with pytest.raises(lc.LogrotateConfError, match="without an open block"):
        lc.parse("weekly\n}\n")


def test_parse_tolerates_block_open_at_eof():
    parsed = lc.parse("/var/log/x {\n weekly\n")
    assert parsed.blocks[0].end is None


def test_enable_on_debian12_inserts_before_include_comment():
    result = lc.enable_dateext(DEBIAN12)
    assert result.changed
    expected = DEBIAN12.replace(
        "# packages drop log rotation",
        lc.MARKER + "\ndateext\n\n# packages drop log rotation",
    )
    assert result.text == expected
    assert lc.has_effective_dateext(result.text)
    # The commented "#dateext" is left alone.
    assert "#dateext\n" in result.text


def test_enable_is_idempotent_and_absent_restores_original():
    first = lc.enable_dateext(DEBIAN12, "-%Y%m%d")
    assert "dateext\ndateformat -%Y%m%d\n" in first.text
    second = lc.enable_dateext(first.text, "-%Y%m%d")
    assert not second.changed and second.text == first.text
    removed = lc.disable_dateext(first.text)
    assert removed.changed and removed.text == DEBIAN12
    assert not lc.disable_dateext(DEBIAN12).changed


@pytest.mark.parametrize("text", [RHEL6, SUSE])
def test_enable_with_existing_global_dateext_is_a_noop(text):
    result = lc.enable_dateext(text)
    assert not result.changed and result.text == text


def test_absent_leaves_unmanaged_dateext_and_says_so():
    result = lc.disable_dateext(RHEL6)
    assert not result.changed
    assert result.messages and "not managed by dervish" in result.messages[0]


def test_dateformat_added_after_existing_unmanaged_dateext():
    result = lc.enable_dateext(SUSE, "-%Y%m%d-%s")
    assert result.changed
    assert "\ndateext\n" + lc.MARKER + "\ndateformat -%Y%m%d-%s\n" in result.text
    assert not lc.enable_dateext(result.text, "-%Y%m%d-%s").changed
    # absent removes only what it added
    assert lc.disable_dateext(result.text).text == SUSE


def test_existing_dateformat_is_changed_in_place():
    text = "weekly\ndateext\ndateformat .%Y-%m-%d\ninclude /etc/logrotate.d\n"
    result = lc.enable_dateext(text, "-%Y%m%d")
    assert result.text == "weekly\ndateext\ndateformat -%Y%m%d\ninclude /etc/logrotate.d\n"
    assert lc.enable_dateext(text).changed is False  # no dateformat asked: left alone


def test_global_nodateext_is_replaced():
    text = "weekly\nnodateext\n\ninclude /etc/logrotate.d\n"
    result = lc.enable_dateext(text)
    assert result.text == "weekly\n" + lc.MARKER + "\ndateext\n\ninclude /etc/logrotate.d\n"
    assert not lc.enable_dateext(result.text).changed
    # absent does not bring nodateext back (and takes the blank line after the managed lines with it)
    assert lc.disable_dateext(result.text).text == "weekly\ninclude /etc/logrotate.d\n"


def test_global_nodateext_after_include_is_replaced_and_dateext_added_on_top():
    text = "weekly\ninclude /etc/logrotate.d\nnodateext\n/var/log/x {\n rotate 1\n}\n"
    result = lc.enable_dateext(text)
    lines = result.text.splitlines()
    assert lines[:5] == ["weekly", lc.MARKER, "dateext", "", "include /etc/logrotate.d"]
    assert lines[5:8] == [lc.MARKER, "dateext", "/var/log/x {"]
    assert lc.disable_dateext(result.text).text == text.replace("nodateext\n", "")
    assert lc.has_effective_dateext(result.text)


def test_block_and_script_words_do_not_count_as_global():
    result = lc.enable_dateext(BLOCKS_ONLY)
    assert result.changed
    assert result.text.startswith("compress\n" + lc.MARKER + "\ndateext\n\n/var/log/app/*.log")
    # the in-block nodateext stays
    assert "    nodateext\n" in result.text


def test_enable_on_file_without_include_or_newline_at_eof():
    result = lc.enable_dateext("weekly\nrotate 4")
    assert result.text == "weekly\nrotate 4\n\n" + lc.MARKER + "\ndateext\n"
    assert lc.disable_dateext(result.text).text == "weekly\nrotate 4\n"
    assert lc.enable_dateext("").text == lc.MARKER + "\ndateext\n"


def test_crlf_line_endings_are_kept():
    text = "weekly\r\ninclude /etc/logrotate.d\r\n"
    result = lc.enable_dateext(text)
    assert result.text == "weekly\r\n" + lc.MARKER + "\r\ndateext\r\n\r\ninclude /etc/logrotate.d\r\n"


@pytest.mark.parametrize("fmt", ["-%Y%m%d", "-%Y%m%d%H", "-%Y-%m-%d_%H%M%S", "-%s", ".%Y%V", "_%Y%m%d-%s"])
def test_valid_dateformats(fmt):
    lc.validate_dateformat(fmt)


@pytest.mark.parametrize(
    "fmt, message",
    [
        ("-%Y%m%d%j", "%j"),
        ("-%F", "%F"),
        ("-%Y%", "trailing"),
        ("-%%Y", "%%"),
        ("-%Y %m", "whitespace"),
        ("/%Y%m%d", "'/'"),
        ("", "empty"),
    ],
)
def test_invalid_dateformats(fmt, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lc.validate_dateformat(fmt)
    with pytest.raises(ValueError):
        lc.enable_dateext(DEBIAN12, fmt)


def test_invalid_dateformat_message_lists_allowed_specifiers():
    with pytest.raises(ValueError) as err:
        lc.validate_dateformat("-%y%m%d")
    assert "%Y %m %d %H %M %S %V %s" in str(err.value)


def test_sortable_dateformat():
    assert lc.dateformat_is_sortable("-%Y%m%d")
    assert not lc.dateformat_is_sortable("-%d%m%Y")
    assert lc.dateformat_is_sortable("-%s")


def test_find_nodateext_in_blocks():
    overrides = lc.find_nodateext(lc.parse(BLOCKS_ONLY), "/etc/logrotate.conf", include_global=False)
    assert [o.as_dict() for o in overrides] == [
        {"file": "/etc/logrotate.conf", "line": 14, "block": "/var/log/with space.log /var/log/other.log"}
    ]


def test_collect_overrides_follows_includes(tmp_path):
    confd = tmp_path / "logrotate.d"
    confd.mkdir()
    (confd / "rsyslog").write_text(D_RSYSLOG)
    (confd / "nginx").write_text(D_NGINX)
    (confd / "legacy").write_text(D_GLOBAL_NODATEEXT)
    (confd / "nginx.dpkg-old").write_text(D_NGINX)  # ignored by logrotate: taboo extension
    (confd / "subdir").mkdir()  # not a regular file: ignored
    (tmp_path / "extra.conf").write_text("/var/log/extra.log {\n  nodateext\n}\n")
    (tmp_path / "loop.conf").write_text("include loop.conf\n")  # included relative to the main file's dir
    main_text = f"weekly\ninclude {confd}\ninclude extra.conf\ninclude loop.conf\n" + BLOCKS_ONLY
    main = tmp_path / "logrotate.conf"
    main.write_text(main_text)

    overrides, problems = lc.collect_overrides(str(main), main_text)
    got = [o.as_dict() for o in overrides]
    assert problems == []
    assert got == [
        {"file": str(main), "line": 18, "block": "/var/log/with space.log /var/log/other.log"},
        {"file": str(confd / "legacy"), "line": 2, "block": None},
        {"file": str(confd / "nginx"), "line": 6, "block": "/var/log/nginx/*.log"},
        {"file": str(tmp_path / "extra.conf"), "line": 2, "block": "/var/log/extra.log"},
    ]


def test_collect_overrides_reports_unparsable_include(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("/var/log/x {\n postrotate\n  echo\n}\n")
    overrides, problems = lc.collect_overrides(str(tmp_path / "main"), f"include {bad}\n")
    assert overrides == []
    assert len(problems) == 1 and str(bad) in problems[0] and "endscript" in problems[0]


def test_include_targets_skips_taboo_and_missing(tmp_path):
    for name in ("b", "a", "c~", "d.rpmsave", ".hidden", "e.bak"):
        (tmp_path / name).write_text("")
    assert [os.path.basename(p) for p in lc.include_targets(str(tmp_path), "/")] == [".hidden", "a", "b"]
    assert lc.include_targets(str(tmp_path / "missing"), "/") == []
    assert lc.include_targets("a", str(tmp_path)) == [str(tmp_path / "a")]


def test_logrotate_error_lines_are_normalised_and_compared():
    out = (
        "reading config file /tmp/x/check.conf\n"
        "error: /tmp/x/check.conf:7 unknown option 'foo' -- ignoring line\n"
        "error: stat of /var/log/x failed: No such file or directory\n"
    )
    errs = lc.logrotate_errors(out, "/tmp/x/check.conf", "/etc/logrotate.conf")
    assert errs == [
        "error: /etc/logrotate.conf:N unknown option 'foo' -- ignoring line",
        "error: stat of /var/log/x failed: No such file or directory",
    ]
    assert lc.new_errors(errs, errs[1:]) == errs[:1]
    assert lc.new_errors(errs + errs[:1], errs) == errs[:1]
