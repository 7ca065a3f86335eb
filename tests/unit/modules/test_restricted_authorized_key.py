"""dervish.backup.restricted_authorized_key: every line carrying the key becomes the one managed line."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dervish.backup.plugins.modules import restricted_authorized_key as mod

BODY = "AAAAC3NzaC1lZDI1NTE5AAAAIOTn1sAmpleKeyBodyForTheTestsOnlyxxxxxxxxx"
KEY = f"ssh-ed25519 {BODY} dervish-backup@backup"
OPTIONS = 'from="127.0.21.1",restrict,command="/usr/local/sbin/dervish-gate"'
MANAGED = f"{OPTIONS} {KEY}"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey alice@laptop"


def run(capsys, check=False, diff=True, **args):
    args.update(_ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("stray", [
    KEY,                                                   # no options: a root shell from anywhere
    f"ssh-ed25519 {BODY}",                                 # no comment
    f"ssh-ed25519 {BODY} another comment",
    f'command="/bin/sh -c id" ssh-ed25519 {BODY} x',       # options with a blank inside quotes
    f"  ssh-ed25519   {BODY}  ",                           # blanks
])
def test_a_stray_copy_above_the_managed_line_is_removed(stray: str) -> None:
    text = f"{OTHER}\n{stray}\n{MANAGED}\n"
    edit = mod.edit_authorized_keys(text, BODY, MANAGED)
    assert edit.text == f"{OTHER}\n{MANAGED}\n"
    assert edit.replaced == 2


def test_the_first_line_is_rewritten_in_place_and_others_kept() -> None:
    text = f"# keys\n{KEY}\n{OTHER}\n# {KEY}\n"
    edit = mod.edit_authorized_keys(text, BODY, MANAGED)
    assert edit.text == f"# keys\n{MANAGED}\n{OTHER}\n# {KEY}\n"  # a comment grants nothing: kept
    assert mod.edit_authorized_keys(edit.text, BODY, MANAGED) == mod.Edit(edit.text, 0)


def test_missing_line_is_appended_also_without_final_newline() -> None:
    assert mod.edit_authorized_keys(OTHER, BODY, MANAGED).text == f"{OTHER}\n{MANAGED}\n"
    assert mod.edit_authorized_keys("", BODY, MANAGED).text == f"{MANAGED}\n"


def test_a_key_whose_body_is_a_prefix_is_not_taken_for_it() -> None:
    longer = f"ssh-ed25519 {BODY}AAAA other@host"
    assert mod.edit_authorized_keys(f"{longer}\n", BODY, MANAGED).text == f"{longer}\n{MANAGED}\n"


def test_bad_key_is_refused() -> None:
    with pytest.raises(mod.AuthorizedKeyError, match="is not a public key"):
        mod.parse_key(f"restrict {KEY}")


def test_check_mode_reports_drift_with_diff_and_writes_nothing(tmp_path, capsys) -> None:
    auth = tmp_path / "authorized_keys"
    auth2 = tmp_path / "authorized_keys2"
    auth.write_text(f"{KEY}\n{MANAGED}\n")
    auth2.write_text(f"{OTHER}\n{KEY}\n")
    for path in (auth, auth2):
        path.chmod(0o600)
    result = run(capsys, check=True, key=KEY, key_options=OPTIONS, path=str(auth), purge=[str(auth2)])
    assert result["changed"] is True
    assert (result["replaced"], result["purged"]) == (2, {str(auth2): 1})
    assert [d["before_header"] for d in result["diff"]] == [str(auth), str(auth2)]
    assert result["diff"][0]["after"] == f"{MANAGED}\n"
    assert auth.read_text() == f"{KEY}\n{MANAGED}\n"
    assert auth2.read_text() == f"{OTHER}\n{KEY}\n"


def test_apply_is_idempotent_and_keeps_the_mode(tmp_path, capsys) -> None:
    auth = tmp_path / "ssh" / "authorized_keys"
    args = dict(key=KEY, key_options=OPTIONS, path=str(auth), purge=[str(tmp_path / "none")], mode="0600")
    first = run(capsys, **args)
    assert first["changed"] is True
    assert auth.read_text() == f"{MANAGED}\n"
    assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(auth.parent).st_mode) == 0o700
    assert run(capsys, **args)["changed"] is False
    auth.chmod(0o644)
    assert run(capsys, **args)["changed"] is True
    assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
