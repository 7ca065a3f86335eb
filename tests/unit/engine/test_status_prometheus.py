"""``dervish status --prometheus FILE``: node_exporter's textfile format, read back by prometheus_client's parser."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dervish_engine import cli, prometheus, status

SUMMARY = ("vault: {v}\nbranch: default\nImage: {n}\n\nACTION: rsync\nBackup-begin: {b}\n{x}{c}{s}")


def image(vault, name, begin, status_text=None, complete=None, extra=""):
    img = vault / name
    (img / "tree").mkdir(parents=True)
    (img / "summary").write_text(SUMMARY.format(
        v=vault.name, n=name, b=begin, x=extra, c=f"Backup-complete: {complete}\n" if complete else "",
        s=f"Status: {status_text}\n" if status_text else ""))
    return img


def vault(bank, name):
    path = bank / name
    (path / "dirvish").mkdir(parents=True)
    return path


def parse(text):
    """{(metric, frozenset(labels)): value}, after the structural checks node_exporter's parser makes."""
    assert text.endswith("\n")
    seen_families, series = [], {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        assert family.name not in seen_families, f"{family.name} split or repeated"
        seen_families.append(family.name)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, f"duplicate series {key}"
            series[key] = sample.value
    helps = [line for line in text.splitlines() if line.startswith("# HELP ")]
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(helps) == len(types) == len(seen_families)
    return series


def site(tmp_path):
    bank = tmp_path / "bank"
    a = vault(bank, "alpha")
    image(a, "a1", "2026-11-20 04:00:00", "success", "2026-11-20 04:01:40",
          extra="Metadata: ok\nImage-bytes: 5000\nImage-new-bytes: 300\n")
    (a / "a1" / "metadata").mkdir()
    (a / "a1" / "metadata" / "metadata.json").write_text("{}")
    image(a, "a2", "2026-11-21 04:00:00", "error (23) -- partial transfer", "2026-11-21 04:02:00")
    b = vault(bank, "beta")
    image(b, "b1", "2026-11-21 04:00:00", "warning (24) -- file vanished on sender", "2026-11-21 04:00:30")
    vault(bank, "gamma")  # no image yet
    return bank


def test_metrics_per_vault(tmp_path):
    bank = site(tmp_path)
    rows = status.collect(SimpleNamespace(banks=[bank]), now=datetime(2026, 11, 21, 5, 0))
    series = parse(prometheus.render(rows, [str(bank), "/gone"], missing=["/gone"], now=1_800_000_000))

    def get(name, **labels):
        return series[(name, frozenset(labels.items()))]

    complete = datetime(2026, 11, 20, 4, 1, 40).timestamp()
    assert get("dervish_vault_last_success_time_seconds", vault="alpha") == complete
    assert get("dervish_vault_last_duration_seconds", vault="alpha") == 100
    assert get("dervish_vault_last_image_bytes", vault="alpha") == 5000
    assert get("dervish_vault_last_new_bytes", vault="alpha") == 300
    assert get("dervish_vault_metadata", vault="alpha") == 1
    assert get("dervish_vault_images", vault="alpha") == 2
    assert get("dervish_vault_good_images", vault="alpha") == 1
    # the last attempt failed, although the last good image is older
    assert {c: get("dervish_vault_last_status", vault="alpha", status=c) for c in prometheus.STATUS_CLASSES} == {
        "success": 0, "warning": 0, "error": 1, "running": 0}
    assert get("dervish_vault_last_status", vault="beta", status="warning") == 1
    assert get("dervish_vault_last_duration_seconds", vault="beta") == 30
    assert get("dervish_vault_metadata", vault="beta") == 0
    # a figure Dirvish never recorded is left out, not 0; a vault without a good image says 0 (1970)
    assert ("dervish_vault_last_image_bytes", frozenset({("vault", "beta")})) not in series
    assert get("dervish_vault_last_success_time_seconds", vault="gamma") == 0
    assert [get("dervish_vault_last_status", vault="gamma", status=c) for c in prometheus.STATUS_CLASSES] == [0] * 4
    assert get("dervish_bank_present", bank=str(bank)) == 1
    assert get("dervish_bank_present", bank="/gone") == 0
    assert get("dervish_run_end_time_seconds") == 1_800_000_000


def test_label_values_are_escaped(tmp_path):
    bank = tmp_path / 'ba"nk\\x'
    vault(bank, 'we"ird\\vault')
    rows = status.collect(SimpleNamespace(banks=[bank]))
    rows.append(status.VaultStatus("line\nbreak", str(bank), "/nowhere"))
    text = prometheus.render(rows, [str(bank)])
    assert 'vault="we\\"ird\\\\vault"' in text and 'vault="line\\nbreak"' in text
    series = parse(text)
    assert series[("dervish_vault_images", frozenset({("vault", 'we"ird\\vault')}))] == 0
    assert series[("dervish_vault_images", frozenset({("vault", "line\nbreak")}))] == 0
    assert series[("dervish_bank_present", frozenset({("bank", str(bank))}))] == 1


def test_a_vault_in_two_banks_is_one_series_first_bank_wins(tmp_path):
    first, second = tmp_path / "b1", tmp_path / "b2"
    image(vault(first, "v"), "i1", "2026-11-20 04:00:00", "success", "2026-11-20 04:00:10")
    vault(second, "v")
    rows = status.collect(SimpleNamespace(banks=[first, second]))
    series = parse(prometheus.render(rows, [str(first), str(second)]))
    assert series[("dervish_vault_images", frozenset({("vault", "v")}))] == 1


@pytest.mark.parametrize("text, running, expected", [
    ("success", False, "success"), ("warning (24) -- file vanished on sender", False, "warning"),
    ("error -- interrupted", False, "error"), ("fatal error (12) -- protocol", False, "error"),
    ("interrupted (no Status)", False, "error"), ("running", True, "running"), (None, False, None),
    (None, True, "running")])
def test_status_class(text, running, expected):
    assert prometheus.status_class(text, running) == expected


def write_master(tmp_path, bank):
    master = tmp_path / "master.conf"
    master.write_text(f"bank:\n\t{bank}\n")
    return master


def test_cli_writes_the_file_atomically_0644(tmp_path, capsys):
    bank = site(tmp_path)
    master = write_master(tmp_path, bank)
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "dervish.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        assert cli.main(["--config", str(master), "status", "--quiet", "--prometheus", str(target)]) == 0
    finally:
        os.umask(old_umask)
    assert capsys.readouterr().out == ""  # --quiet: the file only (the nightly run logs the table once)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert os.listdir(out_dir) == ["dervish.prom"]  # no temporary file left behind
    assert ("dervish_vault_images", frozenset({("vault", "alpha")})) in parse(target.read_text())
    assert cli.main(["--config", str(master), "status", "--prometheus", str(target)]) == 0
    assert "VAULT" in capsys.readouterr().out  # without --quiet the table as usual


def test_cli_unwritable_textfile_is_one_line_exit_1(tmp_path, capsys):
    bank = site(tmp_path)
    master = write_master(tmp_path, bank)
    target = tmp_path / "no-such-dir" / "dervish.prom"
    assert cli.main(["--config", str(master), "status", "-q", "--prometheus", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dervish: cannot write the Prometheus textfile {target}: No such file or directory"]


def test_cli_missing_bank_still_writes_the_file(tmp_path, capsys):
    master = write_master(tmp_path, tmp_path / "unmounted")
    target = tmp_path / "dervish.prom"
    assert cli.main(["--config", str(master), "status", "-q", "--prometheus", str(target)]) == 2
    series = parse(target.read_text())
    assert series[("dervish_bank_present", frozenset({("bank", str(tmp_path / "unmounted"))}))] == 0
