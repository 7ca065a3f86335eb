"""Unit tests for plugins/module_utils/updatedb_conf.py (updatedb.conf and slocate cron editing)."""

from __future__ import annotations

import pytest

from ansible_collections.dervish.backup.plugins.module_utils import updatedb_conf as uc

# Verbatim copy of Debian 12's /etc/updatedb.conf (plocate 1.1.18-1).
PLOCATE_DEBIAN12 = """\
PRUNE_BIND_MOUNTS="yes"
# PRUNENAMES=".git .bzr .hg .svn"
PRUNEPATHS="/tmp /var/spool /media /var/lib/os-prober /var/lib/ceph /home/.ecryptfs /var/lib/schroot"
PRUNEFS="NFS afs autofs binfmt_misc ceph cgroup cgroup2 cifs coda configfs curlftpfs debugfs devfs devpts \
devtmpfs ecryptfs ftpfs fuse.ceph fuse.cryfs fuse.encfs fuse.glusterfs fuse.gocryptfs fuse.gvfsd-fuse fuse.mfs \
fuse.rclone fuse.rozofs fuse.sshfs fusectl fusesmb hugetlbfs iso9660 lustre lustre_lite mfs mqueue ncpfs nfs nfs4 \
ocfs ocfs2 proc pstore rpc_pipefs securityfs shfs smbfs sysfs tmpfs tracefs udev udf usbfs"
"""

# mlocate on RHEL/CentOS 7: blanks around "=", comment lines.
MLOCATE_RHEL7 = """\
PRUNE_BIND_MOUNTS = "yes"
PRUNEFS = "9p afs anon_inodefs auto autofs bdev binfmt_misc cgroup cifs coda configfs cpuset debugfs devpts \
ecryptfs exofs fuse fuse.sshfs fusectl gfs gfs2 gpfs hugetlbfs inotifyfs iso9660 jffs2 lustre mqueue ncpfs nfs \
nfs4 nfsd pipefs proc ramfs rootfs rpc_pipefs securityfs selinuxfs sfs sockfs sysfs tmpfs ubifs udf usbfs"
PRUNENAMES = ".git .hg .svn"
PRUNEPATHS = "/afs /media /mnt /net /sfs /tmp /udev /var/cache/ccache /var/lib/yum/yumdb /var/spool/cups \
/var/spool/squid /var/tmp"
"""

# Debian's old findutils updatedb.conf was sourced by sh: export, unquoted values.
FINDUTILS_SHELL = """\
# This file sets variables that are used by updatedb.
# For more info, see the updatedb(1) manual page.
export PRUNEPATHS=/tmp
export PRUNEFS='NFS nfs nfs4 afs proc smbfs autofs iso9660 ncpfs coda devpts ftpfs devfs mfs sysfs shfs'
"""

SLOCATE_CRON = """\
#!/bin/sh
renice +19 -p $$ >/dev/null 2>&1
/usr/bin/updatedb -f "nfs,smbfs,ncpfs,proc,devpts" -e "/tmp,/var/tmp,/usr/tmp,/afs,/net"
"""


def test_add_to_plocate_conf_changes_only_prunepaths():
    result = uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/backup"])
    assert result.changed
    before, after = PLOCATE_DEBIAN12.splitlines(), result.text.splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [2]
    assert after[2] == before[2][:-1] + ' /backup"'
    assert result.entries[-1] == "/backup" and len(result.entries) == 8
    assert result.warnings == []


def test_add_is_idempotent_and_ignores_trailing_slashes():
    first = uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/backup/", "/srv//bank", "/backup"])
    assert '/var/lib/schroot /backup /srv/bank"' in first.text
    again = uc.edit_updatedb_conf(first.text, ["/backup", "/srv/bank/"])
    assert not again.changed and again.text == first.text
    # entries already present are not duplicated, whatever their spelling
    assert not uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/tmp/", "/var//spool"]).changed


def test_absent_removes_only_listed_paths_and_round_trips():
    added = uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/backup"]).text
    removed = uc.edit_updatedb_conf(added, ["/backup", "/not/there"], state="absent")
    assert removed.changed and removed.text == PLOCATE_DEBIAN12
    middle = uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/media/"], state="absent")
    assert 'PRUNEPATHS="/tmp /var/spool /var/lib/os-prober' in middle.text
    first = uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/tmp"], state="absent")
    assert 'PRUNEPATHS="/var/spool /media' in first.text
    assert not uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/backup"], state="absent").changed


def test_mlocate_style_with_blanks_and_continued_value():
    result = uc.edit_updatedb_conf(MLOCATE_RHEL7, ["/backup"])
    assert 'PRUNEPATHS = "/afs /media' in result.text
    # the value is continued over a backslash-newline in this fixture's source only: one physical line
    assert result.text.splitlines()[3].endswith('/var/spool/squid /var/tmp /backup"')
    assert result.text.replace(" /backup", "") == MLOCATE_RHEL7


def test_unquoted_value_gets_double_quotes_when_it_grows():
    result = uc.edit_updatedb_conf(FINDUTILS_SHELL, ["/backup"])
    assert 'export PRUNEPATHS="/tmp /backup"\n' in result.text
    assert "export PRUNEFS='NFS" in result.text  # untouched
    assert result.warnings == []
    back = uc.edit_updatedb_conf(result.text, ["/backup"], state="absent")
    assert 'export PRUNEPATHS="/tmp"\n' in back.text


def test_unquoted_and_single_quoted_values_warn():
    unchanged = uc.edit_updatedb_conf(FINDUTILS_SHELL, ["/tmp"])
    assert not unchanged.changed
    assert unchanged.warnings and "unquoted" in unchanged.warnings[0]
    single = uc.edit_updatedb_conf("PRUNEPATHS='/tmp /var/spool'  # sh style\n", ["/backup"])
    assert single.text == "PRUNEPATHS='/tmp /var/spool /backup'  # sh style\n"
    assert "single-quoted" in single.warnings[0]


def test_missing_variable_is_appended():
    text = 'PRUNE_BIND_MOUNTS="yes"\nPRUNEFS="nfs proc"'  # no newline at EOF
    result = uc.edit_updatedb_conf(text, ["/backup", "/srv/bank"])
    assert result.text == text + '\nPRUNEPATHS="/backup /srv/bank"\n'
    assert result.entries == ["/backup", "/srv/bank"]
    assert not uc.edit_updatedb_conf(text, ["/backup"], state="absent").changed
    assert uc.edit_updatedb_conf("", ["/backup"]).text == 'PRUNEPATHS="/backup"\n'


def test_commented_prunepaths_is_not_the_variable():
    text = '# PRUNEPATHS="/tmp"\n'
    assert uc.edit_updatedb_conf(text, ["/backup"]).text == text + 'PRUNEPATHS="/backup"\n'


def test_empty_value_and_removing_the_last_entry():
    assert uc.edit_updatedb_conf('PRUNEPATHS=""\n', ["/backup"]).text == 'PRUNEPATHS="/backup"\n'
    assert uc.edit_updatedb_conf('PRUNEPATHS="/backup"\n', ["/backup"], "absent").text == 'PRUNEPATHS=""\n'
    assert uc.edit_updatedb_conf("PRUNEPATHS=/backup\n", ["/backup"], "absent").text == 'PRUNEPATHS=""\n'


def test_trailing_comment_and_inner_spacing_are_kept():
    text = 'PRUNEPATHS="/tmp  /var/spool\t/media " # keep\n'
    result = uc.edit_updatedb_conf(text, ["/backup"])
    assert result.text == 'PRUNEPATHS="/tmp  /var/spool\t/media /backup " # keep\n'
    assert uc.edit_updatedb_conf(result.text, ["/backup"], "absent").text == text
    assert uc.edit_updatedb_conf(text, ["/var/spool"], "absent").text == 'PRUNEPATHS="/tmp\t/media " # keep\n'


def test_duplicate_variable_edits_last_and_warns():
    text = 'PRUNEPATHS="/tmp"\nPRUNEPATHS="/media"\n'
    result = uc.edit_updatedb_conf(text, ["/backup"])
    assert result.text == 'PRUNEPATHS="/tmp"\nPRUNEPATHS="/media /backup"\n'
    assert "set 2 times" in result.warnings[0]
    assert uc.prunepaths_of(result.text) == ["/media", "/backup"]


def test_existing_entry_with_trailing_slash_warns():
    result = uc.edit_updatedb_conf('PRUNEPATHS="/tmp /backup/"\n', ["/backup"])
    assert not result.changed
    assert "'/backup/' is not matched by updatedb" in result.warnings[0]


def test_crlf_is_kept():
    result = uc.edit_updatedb_conf('PRUNEFS="nfs"\r\nPRUNEPATHS="/tmp"\r\n', ["/backup"])
    assert result.text == 'PRUNEFS="nfs"\r\nPRUNEPATHS="/tmp /backup"\r\n'


@pytest.mark.parametrize(
    "bad, words",
    [
        ("backup", "not an absolute path"),
        ("/my backup", "whitespace"),
        ("/tab\there", "whitespace"),
        ('/quo"te', "quotes"),
        ("/it's", "quotes"),
        ("/$HOME", "quotes, backslash and $"),
        ("/back\\slash", "backslash"),
        ("", "not a path"),
    ],
)
def test_invalid_paths_name_option_and_value(bad, words):
    with pytest.raises(uc.PrunePathError) as err:
        uc.check_path(bad)
    assert str(err.value).startswith("paths: ")
    assert repr(bad) in str(err.value) and words in str(err.value)
    with pytest.raises(uc.PrunePathError):
        uc.edit_updatedb_conf(PLOCATE_DEBIAN12, ["/ok", bad])


def test_normalise():
    assert uc.normalise("/backup/") == "/backup"
    assert uc.normalise("//srv///bank//") == "/srv/bank"
    assert uc.normalise("/") == "/"
    assert uc.normalise("///") == "/"


def test_default_file():
    text = uc.default_updatedb_conf(["/backup/", "/backup", "/srv"])
    assert text.startswith("# updatedb.conf: created by dervish")
    assert text.endswith('PRUNEPATHS="/backup /srv"\n')
    assert uc.prunepaths_of(text) == ["/backup", "/srv"]


# --- slocate cron script ---------------------------------------------------------------------------


def test_slocate_cron_adds_to_comma_list_keeping_quotes():
    result = uc.edit_slocate_cron(SLOCATE_CRON, ["/backup"])
    assert result.changed
    assert result.text == SLOCATE_CRON.replace('/afs,/net"', '/afs,/net,/backup"')
    assert result.entries == ["/tmp", "/var/tmp", "/usr/tmp", "/afs", "/net", "/backup"]
    again = uc.edit_slocate_cron(result.text, ["/backup/"])
    assert not again.changed
    back = uc.edit_slocate_cron(result.text, ["/backup"], state="absent")
    assert back.text == SLOCATE_CRON
    middle = uc.edit_slocate_cron(SLOCATE_CRON, ["/usr/tmp"], state="absent")
    assert '-e "/tmp,/var/tmp,/afs,/net"' in middle.text
    # -f's comma list is never touched
    assert '-f "nfs,smbfs,ncpfs,proc,devpts"' in middle.text


def test_slocate_cron_space_separated_and_unquoted_lists():
    spaced = uc.edit_slocate_cron('/usr/bin/updatedb -e "/tmp /var/tmp"\n', ["/backup"])
    assert spaced.text == '/usr/bin/updatedb -e "/tmp /var/tmp /backup"\n'
    bare = uc.edit_slocate_cron("slocate -u -e /tmp\n", ["/backup"])
    assert bare.text == "slocate -u -e /tmp,/backup\n"
    single = uc.edit_slocate_cron("/usr/bin/updatedb -e '/tmp'\n", ["/backup", "/srv"])
    assert single.text == "/usr/bin/updatedb -e '/tmp,/backup,/srv'\n"


def test_slocate_cron_without_e_gets_one_and_loses_it_when_empty():
    added = uc.edit_slocate_cron("#!/bin/sh\nnice /usr/bin/updatedb -f proc > /dev/null 2>&1\n", ["/backup"])
    assert added.text == '#!/bin/sh\nnice /usr/bin/updatedb -e "/backup" -f proc > /dev/null 2>&1\n'
    removed = uc.edit_slocate_cron(added.text, ["/backup"], state="absent")
    assert removed.text == "#!/bin/sh\nnice /usr/bin/updatedb -f proc > /dev/null 2>&1\n"


def test_slocate_cron_ignores_tests_comments_and_other_commands():
    text = (
        "#!/bin/sh\n"
        "# /usr/bin/updatedb -e /tmp\n"
        "if [ -x /usr/bin/updatedb ]; then\n"
        "    /usr/bin/updatedb -e /tmp; echo -e done\n"
        "fi\n"
        "slocate -l0 /etc\n"
    )
    result = uc.edit_slocate_cron(text, ["/backup"])
    assert result.text == text.replace("updatedb -e /tmp;", "updatedb -e /tmp,/backup;")


def test_slocate_cron_without_command_warns():
    result = uc.edit_slocate_cron("#!/bin/sh\nexit 0\n", ["/backup"])
    assert not result.changed and "no updatedb" in result.warnings[0]


def test_slocate_cron_rejects_commas_in_paths():
    with pytest.raises(uc.PrunePathError, match="comma-separated"):
        uc.edit_slocate_cron(SLOCATE_CRON, ["/a,b"])
