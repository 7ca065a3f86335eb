"""Configuration loading: master, client, vault, branch, extra files, overrides; errors with file:line."""

from __future__ import annotations

import pytest

from dervish_engine.config import (
    DEFAULT_RSH,
    find_vault_dir,
    load_master,
    load_vault,
    split_tree,
)
from dervish_engine.errors import ConfigError


@pytest.fixture
def layout(tmp_path, write):
    """A master with two banks, vault v1 in bank2 only, vault v2 in both."""
    for d in ("bank1/v2", "bank2/v1/dirvish", "bank2/v2/dirvish"):
        (tmp_path / d).mkdir(parents=True)
    write("etc/master.conf", f"""\
bank:
\t{tmp_path}/bank1
\t{tmp_path}/bank2
exclude:
\tlost+found/
expire-default: +15 days
Runall:
\tv1 22:00
\tv2:weekly
Runall-jobs: 3
Dirvish: /usr/sbin/dirvish
""")
    write("bank2/v1/dirvish/default.conf", "client: localhost\ntree: /srv/data\nexclude:\n\t*.tmp\n")
    return tmp_path


def master(layout):
    return load_master(layout / "etc/master.conf")


def test_master(layout):
    m = master(layout)
    assert m.banks == [layout / "bank1", layout / "bank2"]
    assert m.confdir == layout / "etc"
    assert [(e.vault, e.branch, e.image_time) for e in m.runall] == [("v1", None, "22:00"), ("v2", "weekly", None)]
    assert m.runall[0].source == f"{layout}/etc/master.conf:8"
    assert m.jobs == 3 and m.dirvish == "/usr/sbin/dirvish"


def test_master_missing_and_without_bank(tmp_path, write):
    with pytest.raises(ConfigError, match="not found"):
        load_master(tmp_path / "nope.conf")
    path = write("etc/master.conf", "exclude: x\n")
    with pytest.raises(ConfigError, match="no bank: defined"):
        load_master(path)
    path = write("etc/master.conf", "bank: relative/bank\n")
    with pytest.raises(ConfigError, match=r"master.conf:1: bank must be an absolute path"):
        load_master(path)


def test_dirvish_master_path_works_the_same(tmp_path, write):
    (tmp_path / "b/v").mkdir(parents=True)
    path = write("etc/dirvish/master.conf", f"bank:\n\t{tmp_path}/b\n")
    assert load_master(path).confdir == tmp_path / "etc/dirvish"


def test_first_bank_holding_the_vault_wins(layout):
    m = master(layout)
    assert find_vault_dir(m, "v1") == layout / "bank2/v1"
    assert find_vault_dir(m, "v2") == layout / "bank1/v2"
    with pytest.raises(ConfigError, match="vault 'v3' not found in any bank"):
        find_vault_dir(m, "v3")
    with pytest.raises(ConfigError, match="invalid vault name"):
        find_vault_dir(m, "../etc")


def test_defaults(layout):
    v = load_vault(master(layout), "v1")
    assert (v.vault, v.branch, v.bank, v.vault_dir) == ("v1", "default", layout / "bank2", layout / "bank2/v1")
    assert v.client == "localhost" and v.tree == "/srv/data" and v.tree_alias is None
    assert v.rsh == DEFAULT_RSH == "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"
    assert v.rsync == "rsync" and v.image_default == "%Y%m%d%H%M%S"
    assert (v.index, v.log, v.summary_mode, v.image_perm, v.meta_perm) == ("gzip", "gzip", "short", 0o755, None)
    assert v.rsync_timeout == 600
    assert v.flags == {
        "permissions": True, "checksum": False, "devices": True, "init": False, "numeric-ids": True,
        "sparse": False, "stats": True, "whole-file": False, "xdev": False, "zxfer": False,
        "acls": True, "xattrs": True,
    }
    assert v.excludes == ["lost+found/", "*.tmp"]
    assert v.expire_default == "+15 days" and v.expire is None and v.expire_rules == []
    assert v.config_files == [layout / "etc/master.conf", layout / "bank2/v1/dirvish/default.conf"]


def test_precedence_master_client_vault_branch_extra_overrides(layout, write):
    write("etc/master.conf", f"bank:\n\t{layout}/bank2\nindex: text\nlog: text\nxdev: 1\nexclude: m\n")
    write("etc/host1.conf", "index: none\nlog: bzip2\nexclude: c\n")
    write("bank2/v1/dirvish/default.conf", "client: root@host1\ntree: /srv\nlog: gzip\nrsh: ssh -p 2222\n"
          "exclude: v\nSET zxfer\nsummary: long\n")
    write("bank2/v1/dirvish/weekly.conf", "expire-default: +1 year\nUNSET xdev\nexclude: b\nsummary: short\n")
    write("etc/extra.conf", "speed-limit: 2.5\nexclude: e\n")
    v = load_vault(master(layout), "v1", "weekly", extra_files=["extra"],
                   overrides={"exclude": ["o"], "summary": "long", "checksum": True, "image_time": "22:00"})
    assert v.branch == "weekly"
    assert v.index == "none"  # client file beats master
    assert v.log == "gzip"  # vault beats client file
    assert v.rsh == "ssh -p 2222"
    assert v.excludes == ["m", "c", "v", "b", "e", "o"]  # lists accumulate in load order
    assert v.flags["zxfer"] and not v.flags["xdev"] and v.flags["checksum"]
    assert v.summary_mode == "long"  # overrides come last
    assert v.expire_default == "+1 year" and v.speed_limit == "2.5" and v.image_time == "22:00"
    assert [p.name for p in v.config_files] == ["master.conf", "default.conf", "host1.conf", "weekly.conf",
                                                "extra.conf"]
    assert v.options["summary"] == "long" and v.options["exclude"][-1] == "o"


def test_vault_colon_branch_and_missing_branch_conf(layout, write):
    write("bank2/v1/dirvish/daily.conf", "expire: +7 days\n")
    v = load_vault(master(layout), "v1:daily")
    assert (v.branch, v.expire) == ("daily", "+7 days")
    with pytest.raises(ConfigError, match="cannot find config file 'weekly' for branch v1:weekly"):
        load_vault(master(layout), "v1", "weekly")


def test_branch_conf_found_in_confdir(layout, write):
    write("etc/monthly.conf", "expire-default: +1 year\n")
    assert load_vault(master(layout), "v1", "monthly").expire_default == "+1 year"


def test_reset_and_single_line_lists(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nRESET exclude\n\tonly-this\nexclude: *.tmp\n"
          "rsync-option: --acls\nexpire-rule: * * * * 1 +3 months\n")
    v = load_vault(master(layout), "v1", overrides={"reset": ["exclude"], "exclude": "cli"})
    assert v.excludes == ["cli"]
    v = load_vault(master(layout), "v1")
    assert v.excludes == ["only-this", "*.tmp"]  # Dirvish would have appended "exclude: *.tmp"
    assert v.rsync_options == ["--acls"]
    assert [r.spec for r in v.expire_rules] == ["+3 months"]
    assert v.expire_rules[0].source.endswith("default.conf:7")


def test_unset_scalar(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nUNSET expire-default\n")
    assert load_vault(master(layout), "v1").expire_default is None


def test_includes_search_order_and_suffix(layout, write):
    write("etc/common.conf", "rsync: /opt/rsync\nexclude: from-confdir\n")
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nconfig: common\nconfig: local\n")
    write("bank2/v1/dirvish/local", "exclude: from-vault\n")
    v = load_vault(master(layout), "v1")
    assert v.rsync == "/opt/rsync"
    assert v.excludes == ["lost+found/", "from-confdir", "from-vault"]
    write("bank2/v1/dirvish/common.conf", "rsync: /vault/rsync\n")  # the vault's dirvish/ comes first
    assert load_vault(master(layout), "v1").rsync == "/vault/rsync"


def test_include_missing(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\n\nconfig: nothere\n")
    with pytest.raises(ConfigError) as exc:
        load_vault(master(layout), "v1")
    assert str(exc.value).startswith(f"{layout}/bank2/v1/dirvish/default.conf:4: cannot find config file 'nothere'")


def test_include_loop_names_both_files(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nconfig: a\n")
    a = write("bank2/v1/dirvish/a.conf", "config: b\n")
    b = write("bank2/v1/dirvish/b.conf", "exclude: x\nconfig: a\n")
    with pytest.raises(ConfigError) as exc:
        load_vault(master(layout), "v1")
    msg = str(exc.value)
    assert msg.startswith(f"{b}:2: config file loop: {b} includes {a}")


def test_branch_may_include_default(layout, write):
    # Dirvish 1.2.1 stops with "config file looping"; dervish skips the already loaded file.
    write("bank2/v1/dirvish/weekly.conf", "config: default\nexpire-default: +1 year\n")
    v = load_vault(master(layout), "v1", "weekly")
    assert v.excludes == ["lost+found/", "*.tmp"] and v.expire_default == "+1 year"


def test_file_exclude(layout, write):
    write("bank2/v1/dirvish/patterns", "# comment\n*.iso\n\ncache/\n")
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nfile-exclude: patterns\n")
    assert load_vault(master(layout), "v1").excludes == ["lost+found/", "*.iso", "cache/"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("exlude: *.tmp", "unknown key 'exlude:' (did you mean 'exclude:'?)"),
        ("expire-defualt: +1 day", "did you mean 'expire-default:'?"),
        ("runall: v1", "did you mean 'Runall:'?"),
        ("frobnicate: 1", "unknown key 'frobnicate:'"),
        ("rsync-options: --acls", "'rsync-options:' is obsolete; use 'rsync-option:'"),
        ("image-perm: 0789", "invalid octal permission '0789'"),
        ("meta-perm: rw", "invalid octal permission 'rw'"),
        ("index: zip", "invalid index: 'zip' (choose one of none, text, gzip, bzip2)"),
        ("log: none", "invalid log: 'none'"),
        ("summary: verbose", "invalid summary"),
        ("SET xdev zfxer", "SET: unknown boolean 'zfxer' (did you mean 'zxfer'?)"),
        ("UNSET foo", "UNSET: unknown boolean 'foo'"),
        ("SET expire", "SET: unknown boolean 'expire'"),
        ("xdev: maybe", "invalid boolean for xdev: 'maybe'"),
        ("RESET client", "RESET works on lists"),
        ("expire: +15 dayz", "invalid expire spec '+15 dayz'"),
        ("expire-default: soon", "invalid expire spec 'soon'"),
        ("expire-rule: * * * * 0 +1 year", "1=Sunday .. 7=Saturday"),
        ("image-time: teatime", "invalid image time 'teatime'"),
        ("rsync-timeout: -5", "invalid rsync-timeout"),
        ("speed-limit: fast", "invalid speed-limit"),
        ("tree: /a b c", "more than a path and an alias"),
        ("client:\n\ta\n\tb", "'client:' takes one value, not an indented list"),
        ("Runall:\n\tv1", "Runall: belongs in the master configuration"),
        ("Runal-jobs: 2", "unknown key 'Runal-jobs:' (did you mean 'Runall-jobs:'?)"),
    ],
)
def test_errors_name_file_and_line(layout, write, line, message):
    path = write("bank2/v1/dirvish/default.conf", "client: localhost\ntree: /srv\n" + line + "\n")
    with pytest.raises(ConfigError) as exc:
        load_vault(master(layout), "v1")
    text = str(exc.value)
    assert text.startswith(f"{path}:3: "), text
    assert message in text


def test_rule_error_points_at_item_line(layout, write):
    path = write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nexpire-rule:\n\t* * * * 1 +1 day\n"
                 "\twd { funday } +1 day\n")
    with pytest.raises(ConfigError) as exc:
        load_vault(master(layout), "v1")
    assert str(exc.value).startswith(f"{path}:5: invalid expire rule")


def test_master_errors(tmp_path, write):
    path = write("etc/master.conf", f"bank:\n\t{tmp_path}\nRunall:\n\tv1 whenever\n")
    with pytest.raises(ConfigError, match=r"master.conf:4: invalid image time 'whenever'"):
        load_master(path)
    path = write("etc/master.conf", f"bank:\n\t{tmp_path}\nRunall-jobs: 0\n")
    with pytest.raises(ConfigError, match=r"master.conf:3: invalid Runall-jobs"):
        load_master(path)


def test_unknown_capitalised_keys_are_left_to_other_tools(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\ntree: /t\nMonitoring: yes\nDirvish: /x\n")
    assert load_vault(master(layout), "v1").client == "a"


def test_overrides_errors(layout):
    with pytest.raises(ConfigError, match="^command line: invalid expire spec"):
        load_vault(master(layout), "v1", overrides={"expire": "+3 weaks"})
    with pytest.raises(ConfigError, match="^command line: unknown key 'bogus:'"):
        load_vault(master(layout), "v1", overrides={"bogus": "1"})


def test_missing_client_or_tree(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: a\n")
    with pytest.raises(ConfigError, match="no tree: defined for vault v1"):
        load_vault(master(layout), "v1")
    (layout / "bank2/v1/dirvish/default.conf").unlink()
    with pytest.raises(ConfigError, match="cannot find config file 'default' for vault 'v1'"):
        load_vault(master(layout), "v1")


def test_tree_alias_and_escapes():
    assert split_tree("/srv/data") == ("/srv/data", None)
    assert split_tree("/srv/data /data") == ("/srv/data", "/data")  # Dirvish dropped the 'a'
    assert split_tree(r"/srv/my\ data /my\ alias") == ("/srv/my data", "/my alias")
    assert split_tree(":module/path") == (":module/path", None)


def test_source_and_is_local(layout, write):
    write("bank2/v1/dirvish/default.conf", "client: localhost\ntree: /srv/my\\ data/ alias\n")
    v = load_vault(master(layout), "v1")
    assert v.tree == "/srv/my data/" and v.tree_alias == "alias" and v.tree_spec == "/srv/my\\ data/ alias"
    assert v.is_local("server1") and v.source("server1") == "/srv/my data/"
    v.client = "server1"
    assert v.is_local("server1") and v.source("server1") == "/srv/my data/"
    v.client, v.tree = "root@db1", "/var/lib"
    assert not v.is_local("server1") and v.source("server1") == "root@db1:/var/lib/"
    v.tree = "/"
    assert v.source("server1") == "root@db1:/"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a:b", "-x", "a b"])
def test_invalid_vault_names(layout, name):
    with pytest.raises(ConfigError, match="invalid vault name"):
        find_vault_dir(master(layout), name)


def test_config_error_formats():
    assert str(ConfigError("bad", "/f.conf", 3)) == "/f.conf:3: bad"
    assert str(ConfigError("bad", "/f.conf")) == "/f.conf: bad"
    assert str(ConfigError("bad")) == "bad"
    err = ConfigError("bad", "/f.conf", 3)
    assert (err.message, err.path, err.line) == ("bad", "/f.conf", 3)


@pytest.mark.parametrize("option", ["--inplace", "--append", "--append-verify", "--write-devices"])
def test_rsync_options_that_rewrite_shared_files_are_refused(tmp_path, option):
    from dervish_engine.config import check_vault_file

    conf = tmp_path / "default.conf"
    conf.write_text(f"client: localhost\ntree: /srv\nrsync-option:\n\t--bwlimit=1000\n\t{option}\n")
    with pytest.raises(ConfigError, match=rf"default.conf:5: rsync-option {option} is not allowed"):
        check_vault_file(conf)
