"""``ImageResult`` carries what the snapshot module reports per vault, from real local images."""

from __future__ import annotations

import gzip
import json
import os
import re

import pytest

from dervish_engine import slots
from dervish_engine.config import load_master
from dervish_engine.image import ImageOptions, ImageRun, rsync_stats, status_word

FIELDS = ("status", "name", "reference", "files_transferred", "bytes_transferred", "image_bytes", "new_bytes",
          "duration", "error", "metadata")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv(slots.ENV_DIR, str(tmp_path / "slots"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "same").write_bytes(b"s" * 3000)
    (src / "changes").write_bytes(b"c" * 1000)
    conf = tmp_path / "bank" / "v" / "dirvish" / "default.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"client: localhost\ntree: {src}\n")
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{tmp_path / 'bank'}\n")
    return tmp_path, src, conf


def image(tmp_path, name, **options):
    return ImageRun(load_master(str(tmp_path / "master.conf")), "v", options=ImageOptions(image=name, **options)).run()


def test_fields_of_a_first_and_a_second_image(site):
    tmp_path, src, dummy = site
    first = image(tmp_path, "one")
    expected = ("success", "one", "one", None, None)
    assert (first.status, first.name, first.image, first.reference, first.error) == expected
    assert (first.files_transferred, first.image_bytes, first.new_bytes, first.bytes_transferred) == (
        2, 4000, 4000, 4000)
    assert first.metadata == "none" and first.summary_status == "success" and first.exit_code == 0
    assert 0 < first.duration < 60 and first.waited < 1
    (src / "changes").write_bytes(b"C" * 1500)
    second = image(tmp_path, "two")
    assert (second.status, second.reference, second.files_transferred) == ("success", "one", 1)
    assert (second.image_bytes, second.new_bytes) == (4500, 1500)
    assert 0 < second.bytes_transferred <= 1500
    summary = (tmp_path / "bank" / "v" / "two" / "summary").read_text()
    assert "Image-bytes: 4500\n" in summary and "Image-new-bytes: 1500\n" in summary
    plain = second.as_dict()
    assert set(FIELDS) <= set(plain) and json.loads(json.dumps(plain)) == plain
    assert plain["image_dir"] == str(tmp_path / "bank" / "v" / "two")


def test_fields_of_a_failed_rsync(site, tmp_path):
    dummy, src, conf = site
    fake = tmp_path / "fake-rsync"
    fake.write_text("#!/bin/sh\necho 'rsync: [sender] send_files failed to open \"/x\": Permission denied (13)' >&2\n"
                    "exit 23\n")
    fake.chmod(0o755)
    conf.write_text(conf.read_text() + f"rsync: {fake}\n")
    result = image(tmp_path, "bad")
    assert result.status == "error" and result.exit_code == 1 and not result.good
    assert result.error == 'rsync: [sender] send_files failed to open "/x": Permission denied (13)'
    assert result.summary_status.startswith("error (23) -- partial transfer")
    assert result.files_transferred is None and result.reference is None


def test_fields_of_a_failed_pre_hook(site, tmp_path):
    dummy, src, conf = site
    conf.write_text(conf.read_text() + "pre-server: exit 5\n")
    result = image(tmp_path, "hook")
    assert (result.status, result.error, result.metadata) == ("error", "error -- pre-server failed (5)", None)


def test_a_good_image_with_a_failed_post_hook_is_a_warning(site, tmp_path):
    dummy, src, conf = site
    conf.write_text(conf.read_text() + "post-server: exit 3\n")
    result = image(tmp_path, "post")
    assert (result.status, result.exit_code, result.summary_status) == ("warning", 4, "success")
    assert result.good and result.error is None and result.problems == ["post-server failed (3)"]


def test_dry_run_fields(site, tmp_path):
    import io

    image(tmp_path, "one")
    result = ImageRun(load_master(str(tmp_path / "master.conf")), "v",
                      options=ImageOptions(image="two", dry_run=True), stdout=io.StringIO()).run()
    assert (result.status, result.name, result.reference, result.image_dir) == ("dry-run", "two", "one", None)


@pytest.mark.parametrize("summary_status, code, word", [
    ("success", 0, "success"),
    ("warning (24) -- file vanished on sender", 0, "warning"),
    ("success", 4, "warning"),
    ("success", 1, "error"),
    ("error (23) -- partial transfer", 1, "error"),
    ("fatal error (12) -- filesystem full", 1, "error"),
    (None, 1, "error"),
])
def test_status_word(summary_status, code, word):
    assert status_word(summary_status, code) == word


def test_rsync_stats_take_the_last_attempt(tmp_path):
    log = tmp_path / "log"
    block = ("Number of regular files transferred: {n}\nTotal file size: 1,234 bytes\n"
             "Total transferred file size: {t} bytes\nLiteral data: {lit} bytes\n")
    log.write_text("ACTION: rsync\n" + block.format(n=9, t=9, lit=9) + "file\n" + block.format(n=2, t="1.000", lit=7))
    assert rsync_stats(log) == {"files_transferred": 2, "bytes_transferred": 7, "image_bytes": 1234,
                                "new_bytes": 1000}
    assert rsync_stats(tmp_path / "missing") == dict.fromkeys(
        ("files_transferred", "bytes_transferred", "image_bytes", "new_bytes"))


def test_a_waited_image_says_so_in_its_log(site, tmp_path):
    import threading
    import time

    holder = slots.try_acquire(tmp_path / "slots", 1, "other")
    messages = []
    results = []
    run = ImageRun(load_master(str(tmp_path / "master.conf")), "v", options=ImageOptions(image="late"),
                   report=messages.append)
    thread = threading.Thread(target=lambda: results.append(run.run()))
    thread.start()
    time.sleep(0.6)
    holder.release()
    thread.join(30)
    assert results[0].status == "success" and results[0].waited >= 0.5
    log = gzip.decompress((tmp_path / "bank" / "v" / "late" / "log.gz").read_bytes()).decode()
    assert re.search(r"^dervish: waited \d+\.\d s for image slot 1 of 1 \(Runall-jobs:\)$", log, re.M), log
    assert os.path.exists(tmp_path / "bank" / "v" / "late" / "tree" / "same")
