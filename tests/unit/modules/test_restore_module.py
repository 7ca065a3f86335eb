"""dervish.backup.restore's helpers: the push's ssh offers only the one-time key (the vault's own key is
dropped, its pinned host keys kept) with bounded timeouts, and itemized lines name client paths."""

from __future__ import annotations

import shlex

from ansible_collections.dervish.backup.plugins.modules import restore as mod

RSH = ("ssh -i /root/.ssh/dervish_backup_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
       "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/root/.ssh/known_hosts")


def test_the_push_offers_only_the_one_time_key():
    words = shlex.split(mod.ssh_command(RSH, "/run/dervish/restore/r/key"))
    assert words[:3] == ["ssh", "-i", "/run/dervish/restore/r/key"]
    assert "/root/.ssh/dervish_backup_ed25519" not in words and words.count("-i") == 1
    assert "UserKnownHostsFile=/root/.ssh/known_hosts" in words and "StrictHostKeyChecking=yes" in words
    assert "ConnectTimeout=30" in words and "ServerAliveInterval=20" in words
    other = shlex.split(mod.ssh_command("ssh -o IdentityFile=/k -o ConnectTimeout=5 -i/x", "/new"))
    assert other == ["ssh", "-i", "/new", "-o", "IdentitiesOnly=yes", "-o", "ServerAliveInterval=20",
                     "-o", "ConnectTimeout=5"]


def test_itemized_lines_name_client_paths():
    assert mod.label(">f+++++++++ alice/doc.txt", "/home/") == ">f+++++++++ /home/alice/doc.txt"
    assert mod.label("cd+++++++++ alice/", "/home") == "cd+++++++++ /home/alice/"
    assert mod.label("*deleting   proj/old", "/srv/r/home") == "*deleting   /srv/r/home/proj/old"
    assert mod.label("hf+++++++++ proj/h.txt => proj/a.txt", "/home/rtest") == \
        "hf+++++++++ /home/rtest/proj/h.txt => /home/rtest/proj/a.txt"
    assert mod.label("cL+++++++++ proj/ln -> a.txt", "/home/rtest") == "cL+++++++++ /home/rtest/proj/ln -> a.txt"


def test_the_run_of_a_key_directory():
    assert mod.run_of("ctl-1.4711.99887-laptop1") == "ctl-1.4711.99887"
    assert mod.run_of("ctl.4711.99887-my-host.example") == "ctl.4711.99887"
    assert mod.run_of("ctl.4711.99887") == "ctl.4711.99887"


def test_target_directories_are_the_fewest_that_hold_every_path():
    assert mod.target_roots(["/home/alice", "/etc", "/home/alice/projects", "/etc/ssh"]) == ["/etc", "/home/alice"]
    assert mod.target_roots(["/home/alice", "/home/alicia"]) == ["/home/alice", "/home/alicia"]  # no prefix match
    assert mod.target_roots(["/", "/etc"]) == ["/"]
    roots = ["/etc", "/home/alice"]
    assert [mod.root_of(d, roots) for d in ("/etc/ssh", "/home/alice", "/home/alicia", "/")] == [0, 1, None, None]
    assert mod.root_of("/anything", ["/"]) == 0
