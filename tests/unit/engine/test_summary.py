"""Summary files: Dirvish's exact layout, round trip, parsing real Dirvish summaries."""

from __future__ import annotations

from dervish_engine import confgrammar as g
from dervish_engine.summary import Summary, parse_summary, render, render_head, render_tail, status_is_good

# reference §2.2, the lab's first image (with <SRC>/<BANK> filled in)
DIRVISH_SUMMARY = """\
client: localhost
tree: /srv/src
rsh: ssh
Server: backup1
Bank: /backup/bank
vault: vault1
branch: default
Image: 20261126-122414
Reference: default
Image-now: 2026-11-26 12:24:14
Expire: +15 days == 2026-12-11 12:24:14
exclude:
\t*.tmp
\tsub/deeper/
SET permissions devices init numeric-ids stats 
UNSET checksum sparse whole-file xdev zxfer 


ACTION: rsync -vrltH --delete --stats --numeric-ids -D -pgo --exclude-from=/backup/bank/vault1/20261126-122414/exclude /srv/src/ /backup/bank/vault1/20261126-122414/tree
Backup-begin: 2026-11-26 12:24:14
Backup-complete: 2026-11-26 12:24:14
Status: success
"""  # noqa: W291, E501 - trailing blanks after SET/UNSET and the long ACTION line are the format


def example() -> Summary:
    return Summary(
        client="localhost", tree="/srv/src", rsh="ssh", server="backup1", bank="/backup/bank", vault="vault1",
        branch="default", image="20261126-122414", reference="default", image_now="2026-11-26 12:24:14",
        expire="+15 days == 2026-12-11 12:24:14", excludes=["*.tmp", "sub/deeper/"],
        set_flags=["permissions", "devices", "init", "numeric-ids", "stats"],
        unset_flags=["checksum", "sparse", "whole-file", "xdev", "zxfer"],
        action="rsync -vrltH --delete --stats --numeric-ids -D -pgo "
        "--exclude-from=/backup/bank/vault1/20261126-122414/exclude /srv/src/ /backup/bank/vault1/20261126-122414/tree",
        backup_begin="2026-11-26 12:24:14", backup_complete="2026-11-26 12:24:14", status="success",
    )


def test_render_is_byte_exact_dirvish_layout():
    s = example()
    assert render_head(s) + render_tail(s) == DIRVISH_SUMMARY
    assert render(s) == DIRVISH_SUMMARY


def test_head_ends_with_action_and_begin_tail_has_the_rest():
    s = example()
    head = render_head(s)
    assert head.endswith("ACTION: " + s.action + "\nBackup-begin: 2026-11-26 12:24:14\n")
    s.backup_begin = None  # dry run: nothing has begun
    assert render_head(s).endswith("\n\n\nACTION: " + s.action + "\n")
    assert render_tail(s) == "Backup-complete: 2026-11-26 12:24:14\nStatus: success\n"


def test_parse_real_dirvish_summary():
    s = parse_summary(DIRVISH_SUMMARY)
    assert s == example()
    assert s.good


def test_optional_fields_hook_failures_and_long_mode_round_trip():
    s = example()
    s.image_temp = "current"
    s.expire_rule = "*   *     1-7 *         su   +1 year"
    s.rsync_options = ["--acls", "--xattrs"]
    s.extra = {"Command-Args": "--vault vault1", "Configfiles": ["/etc/dervish/master.conf", "/b/default.conf"],
               "index": "gzip"}
    s.hook_failures = ["post-client failed (3)", "post-server failed (1)"]
    text = render(s)
    assert "Image: 20261126-122414\nimage-temp: current\nReference: default\n" in text
    assert ("Expire: +15 days == 2026-12-11 12:24:14\nExpire-rule: *   *     1-7 *         su   +1 year\n"
            "exclude:") in text
    assert "\t sub/deeper/" not in text and "rsync-option:\n\t--acls\n\t--xattrs\nSET " in text
    assert ("UNSET checksum sparse whole-file xdev zxfer \n\nCommand-Args: --vault vault1\nConfigfiles:\n"
            "\t/etc/dervish/master.conf\n\t/b/default.conf\nindex: gzip\n\nACTION: ") in text
    assert text.endswith("post-client failed (3)\npost-server failed (1)\nBackup-complete: 2026-11-26 12:24:14\n"
                         "Status: success\n")
    assert parse_summary(text) == s


def test_empty_fields_are_omitted():
    text = render(Summary(vault="v", branch="b", image="i", expire="Never", action="rsync x y"))
    assert text == "vault: v\nbranch: b\nImage: i\nExpire: Never\n\n\nACTION: rsync x y\n"


def test_interrupted_and_failed_summaries():
    head = DIRVISH_SUMMARY.split("Backup-begin", maxsplit=1)[0]
    s = parse_summary(head + "Backup-begin: 2026-11-26 12:24:14\n")  # killed: no Status, no Backup-complete
    assert s.status is None and s.backup_complete is None and not s.good
    s = parse_summary(head + "pre-server failed (3)\n")
    assert s.hook_failures == ["pre-server failed (3)"] and s.status is None
    s = parse_summary(head + "Backup-begin: x\nStatus:  (255) -- \n")  # fatal: Status without Backup-complete
    assert s.status == "(255) --" and not s.good
    s = parse_summary(head + "Backup-complete: 2026-11-26 12:24:14\nStatus: warning (24) -- file vanished on sender\n")
    assert s.good


def test_tolerant_of_garbage():
    s = parse_summary("random text\n\tindented\nStatus: success\n#comment\n")
    assert s.status == "success" and s.other == ["random text", "indented"]
    assert parse_summary("") == Summary()


def test_status_is_good():
    assert status_is_good("success")
    assert status_is_good("warning (24) -- file vanished on sender")
    assert not status_is_good("error (23) -- partial transfer")
    assert not status_is_good("fatal error (12) -- filesystem full")
    assert not status_is_good("(255) --")
    assert not status_is_good("")
    assert not status_is_good(None)


def test_dirvish_grammar_reads_our_summary():
    """Dirvish's loadconfig view (key: value, lists, SET/UNSET) of what we write."""
    s = example()
    s.hook_failures = ["post-server failed (2)"]
    sts = g.parse_text(render(s), strict=False)
    scalars = {st.key: st.value for st in sts if st.kind == g.SCALAR}
    assert scalars["Expire"] == "+15 days == 2026-12-11 12:24:14"
    assert scalars["Status"] == "success" and scalars["vault"] == "vault1" and scalars["Image"] == s.image
    assert [st.items for st in sts if st.kind == g.LIST] == [["*.tmp", "sub/deeper/"]]
