"""Restore metadata in images: the ``metadata:`` key, the checks of a client's (untrusted) JSON, the summary's
``Metadata:`` line, ``status``'s ``metadata`` and the command run (real local processes)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from dervish_engine import metadata_fetch, status
from dervish_engine import metadata_layout as layout
from dervish_engine.config import load_master, load_vault
from dervish_engine.errors import ConfigError
from dervish_engine.summary import Summary, parse_summary, render, render_tail


def collection(**items) -> dict:
    base = {"hostname": {"status": "ok", "output": "client1\n", "source": "/proc/sys/kernel/hostname", "rc": None,
                         "command": None, "stderr": "", "data": "client1"},
            "sfdisk/sda": {"status": "ok", "output": "label: gpt\n", "command": ["sfdisk", "--dump", "/dev/sda"],
                           "rc": 0, "source": None, "stderr": "", "data": None},
            "uname": {"status": "failed", "output": "", "command": ["uname", "-a"], "rc": 1, "stderr": "boom",
                      "source": None, "data": None},
            "mdadm": {"status": "skipped: tool missing", "output": "", "command": ["mdadm"], "rc": None,
                      "stderr": "", "source": None, "data": None}}
    base.update(items)
    return {"format": 1, "collected_at": "2026-12-03T12:00:00+0000", "disks": ["sda"], "boot": {"firmware": "bios"},
            "items": base}


# ------------------------------------------------------------------------------------------------ config
def vault_conf(tmp_path, text: str, branch_text: str = ""):
    bank = tmp_path / "bank"
    (bank / "v" / "dirvish").mkdir(parents=True)
    (tmp_path / "master.conf").write_text(f"bank:\n\t{bank}\n")
    (bank / "v" / "dirvish" / "default.conf").write_text(f"client: c1\ntree: /srv\n{text}")
    if branch_text:
        (bank / "v" / "dirvish" / "nightly.conf").write_text(f"config: default\n{branch_text}")
    return load_master(tmp_path / "master.conf")


def test_metadata_key_is_parsed(tmp_path):
    master = vault_conf(tmp_path, "metadata: dervish-metadata --json\n")
    assert load_vault(master, "v").metadata == "dervish-metadata --json"


def test_metadata_unset_in_a_branch(tmp_path):
    master = vault_conf(tmp_path, "metadata: dervish-metadata --json\n", "UNSET metadata\n")
    assert load_vault(master, "v", "nightly").metadata is None
    assert load_vault(vault_conf(tmp_path / "x", ""), "v").metadata is None


@pytest.mark.parametrize("value, message", [
    ("'dervish-metadata --json", "No closing quotation"),
    ("--json", "starts with an option"),
    ("''", "empty command"),
])
def test_bad_metadata_command_names_file_and_line(tmp_path, value, message):
    master = vault_conf(tmp_path, f"metadata: {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_vault(master, "v")
    text = str(exc.value)
    assert "invalid metadata" in text and message in text and "default.conf:3" in text


def test_misspelt_metadata_key_suggests_it(tmp_path):
    master = vault_conf(tmp_path, "metdata: dervish-metadata --json\n")
    with pytest.raises(ConfigError, match=r"did you mean 'metadata:'"):
        load_vault(master, "v")


# ----------------------------------------------------------------------------------- untrusted input
def test_valid_collection_is_accepted_and_written(tmp_path):
    data = layout.parse_collection(json.dumps(collection()).encode())
    assert layout.failed_items(data) == ["uname"]
    (tmp_path / "img").mkdir()
    written = layout.write_metadata_dir(data, str(tmp_path / "img" / "metadata"))
    assert written == ["boot.json", "hostname", "metadata.json", "sfdisk/sda.dump"]
    assert (tmp_path / "img" / "metadata" / "sfdisk" / "sda.dump").read_text() == "label: gpt\n"


@pytest.mark.parametrize("name", ["../x", "a/b", "sfdisk/../../x", "sfdisk/.x", "sfdisk/", ".hidden", "..", "",
                                  "sfdisk/a/b", "new\nline", "x" * 256])
def test_item_names_must_be_file_names(name):
    item = {"status": "ok", "output": "x"}
    with pytest.raises(layout.MetadataError, match="is not a file name"):
        layout.parse_collection(json.dumps(collection(**{name: item})).encode())


@pytest.mark.parametrize("raw, message", [
    (b"", "no output"),
    (b"not json", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"format": 2, "items": {}}', "unsupported format 2"),
    (b'{"format": true, "items": {}}', "unsupported format"),
    (b'{"format": 1, "items": []}', "'items' is not an object"),
    (b'{"format": 1, "items": {"uname": "x"}}', "item uname: not an object"),
    (b'{"format": 1, "items": {"uname": {"status": "great"}}}', "unknown status"),
    (b'{"format": 1, "items": {"uname": {"status": "ok"}}}', "no 'output'"),
    (b'{"format": 1, "items": {"uname": {"status": "ok", "output": 5}}}', "'output' has the wrong type"),
    (b'{"format": 1, "items": {"uname": {"status": "ok", "output": "", "rc": "0"}}}', "'rc' has the wrong type"),
    (b'{"format": 1, "items": {}, "disks": ["../sda"]}', "disk '../sda' is not a file name"),
    (b'{"format": 1, "items": {}, "boot": []}', "'boot' is not an object"),
    (b'{"format": 1, "items": {"uname": {"status": "ok", "output": "\\ud800"}}}', "not valid text"),
    (b"[" * 200000 + b"]" * 200000, "nested too deeply"),
])
def test_bad_output_is_rejected_with_a_reason(raw, message):
    with pytest.raises(layout.MetadataError, match=message.replace("(", r"\(").replace("[", r"\[")):
        layout.parse_collection(raw)


def test_size_bound():
    raw = json.dumps(collection()).encode()
    with pytest.raises(layout.MetadataError, match="larger than 100 bytes"):
        layout.parse_collection(raw, limit=100)


# --------------------------------------------------------------------------------------------- summary
def test_summary_metadata_line_round_trip():
    s = Summary(client="c", image="i", action="rsync", backup_begin="2026-12-03 12:00:00", metadata="ok",
                image_bytes=10, image_new_bytes=2, backup_complete="2026-12-03 12:01:00", status="success")
    tail = render_tail(s)
    assert tail.startswith("Metadata: ok\nImage-bytes: 10\n")
    back = parse_summary(render(s))
    assert back.metadata == "ok" and back.has_metadata and back.status == "success" and not back.other
    for text, has in (("ok (items failed: uname)", True), ("failed (dervish-metadata exited 3)", False),
                      ("none", False), (None, False), ("okay", False)):
        assert Summary(metadata=text).has_metadata is has


def test_summary_long_option_metadata_is_not_the_result():
    # summary: long lists the lowercase option before ACTION; only the capitalised line after it is the result
    text = "client: c\n\nmetadata: dervish-metadata --json\n\nACTION: rsync\nStatus: success\n"
    s = parse_summary(text)
    assert s.metadata is None and s.extra["metadata"] == "dervish-metadata --json"


def test_summary_value_is_one_clean_line():
    assert metadata_fetch.summary_value("failed (bad\nthing # here\tx)") == "failed (bad thing here x)"
    assert len(metadata_fetch.summary_value("x" * 1000)) == 300


# ---------------------------------------------------------------------------------------------- status
def make_image(vault: Path, name: str, metadata_line: str, with_dir: bool) -> None:
    img = vault / name
    (img / "tree").mkdir(parents=True)
    line = f"Metadata: {metadata_line}\n" if metadata_line else ""
    day = f"2026-12-0{name[-1]}"
    (img / "summary").write_text(f"vault: v\nImage: {name}\n\nACTION: rsync\nBackup-begin: {day} 10:00:00\n"
                                 f"{line}Backup-complete: {day} 10:05:00\nStatus: success\n")
    if with_dir:
        (img / "metadata").mkdir()
        (img / "metadata" / "metadata.json").write_text("{}\n")


@pytest.mark.parametrize("line, with_dir, expected", [
    ("ok", True, True), ("ok (items failed: uname)", True, True), ("ok", False, False),
    ("failed (timed out after 600s)", False, False), ("none", False, False), ("", False, False),
])
def test_status_says_whether_the_last_good_image_has_metadata(tmp_path, line, with_dir, expected):
    vault = tmp_path / "v"
    make_image(vault, "i1", "ok", True)  # an older image with metadata does not count
    make_image(vault, "i2", line, with_dir)
    vs = status.vault_status(vault)
    assert vs.last_good == "i2" and vs.metadata is expected
    doc = json.loads(status.render_json([vs]))
    assert doc["vaults"][0]["metadata"] is expected


def test_status_without_good_image_has_no_metadata_value(tmp_path):
    (tmp_path / "v").mkdir()
    assert status.vault_status(tmp_path / "v").metadata is None


# ----------------------------------------------------------------------------- the command (real processes)
def printer(tmp_path: Path, data, code: int = 0) -> str:
    path = tmp_path / f"collection-{len(list(tmp_path.glob('collection-*')))}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return f"cat {path}; exit {code}"


def test_fetch_writes_the_layout_from_a_local_command(tmp_path):
    (tmp_path / "img").mkdir()
    result = metadata_fetch.fetch(printer(tmp_path, collection(), 1), "localhost", None, True, tmp_path / "img")
    assert result.ok and result.text == "ok (items failed: uname)" and result.failed_items == ["uname"]
    assert (tmp_path / "img" / "metadata" / "hostname").read_text() == "client1\n"


def test_fetch_failures_write_nothing(tmp_path):
    (tmp_path / "img").mkdir()
    cases = [
        (printer(tmp_path, collection(), 3), "failed (cat exited 3)"),
        ("echo 'gate: command refused' >&2; exit 2", "failed (echo exited 2: gate: command refused)"),
        (printer(tmp_path, "{not json"), "failed (invalid output: output is not JSON"),
        (printer(tmp_path, collection(**{"../../evil": {"status": "ok", "output": "x"}})),
         "failed (invalid output: item name '../../evil' is not a file name"),
        ("/nonexistent/dervish-metadata --json", "failed (/nonexistent/dervish-metadata exited 127"),
    ]
    for command, text in cases:
        result = metadata_fetch.fetch(command, "localhost", None, True, tmp_path / "img")
        assert not result.ok and result.text.startswith(text), (command, result.text)
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_fetch_bounds_size_and_time(tmp_path):
    (tmp_path / "img").mkdir()
    endless = f"{sys.executable} -c 'import sys\nwhile True: sys.stdout.write(\"x\" * 65536)'"
    result = metadata_fetch.fetch(endless, "localhost", None, True, tmp_path / "img", limit=1 << 20)
    assert result.text == f"failed (output larger than {1 << 20} bytes)"
    result = metadata_fetch.fetch("sleep 30", "localhost", None, True, tmp_path / "img", timeout=1)
    assert result.text == "failed (timed out after 1s)"
    started = time.monotonic()
    result = metadata_fetch.fetch("sleep 60 & exit 0", "localhost", None, True, tmp_path / "img")
    assert result.text == "failed (output not closed after the command exited)" and time.monotonic() - started < 30
    assert not (tmp_path / "img" / "metadata").exists()


def test_remote_command_is_one_word_after_the_client():
    argv = metadata_fetch.command_argv("dervish-metadata --json", "laptop1", "ssh -o BatchMode=yes", False)
    assert argv == ["ssh", "-o", "BatchMode=yes", "laptop1", "dervish-metadata --json"]
    assert metadata_fetch.command_argv("x --json", "localhost", "ssh", True) == ["sh", "-c", "x --json"]
