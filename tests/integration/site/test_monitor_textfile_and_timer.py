"""Issue 8, monitoring: the nightly run's Prometheus textfile, and systemd's timer as the scheduler.

Everything for real in the lab: site.yml provisions the server with ``backup_server_scheduler:
systemd`` and ``backup_server_textfile_path``; the real nightly wrapper mounts the loop-device drive,
backs up every vault over ssh and writes the textfile, which prometheus_client's parser reads back.

What the lab can and cannot prove about systemd: its hosts have no systemd as PID 1 (labctl starts
each in its own PID namespace under a plain init; there is no /run/systemd/system), so the role must
install the units and the mail program there and must not ask systemd to reload, enable or start
anything; that is checked (the tasks that would are skipped, the run does not fail, a second run
changes nothing). The units as installed on the server are checked there with ``systemd-analyze
verify`` (the server has the programs they start). Enabling and starting the timer under a running
systemd is not exercised (tests/unit/plugins/test_systemd_timer.py proves the timer fires when cron
would, with systemd-analyze calendar).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lab import Lab
from playbooks import lab_inventory, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]
VAULTS = ("laptop1-etc", "laptop1-home", "laptop2-etc", "firewall-etc")
TEXTFILE = "/var/lib/prometheus/node-exporter/dervish.prom"
UNITS = ("dervish-backup.service", "dervish-backup.timer", "dervish-backup-mail.service")
SYSTEMD_TASKS = ("Enable and start the timer", "Stop and disable the timer that is no longer wanted",
                 "Make systemd forget the removed units")


def _inventory(tmp_path: Path, name: str, **server_vars) -> Path:
    inventory = lab_inventory(tmp_path / name)
    path = inventory / "group_vars" / "backup_servers.yml"
    data = yaml.safe_load(path.read_text()) or {}
    path.write_text(yaml.safe_dump({**data, **server_vars}))
    return inventory


def _exists(lab: Lab, path: str) -> bool:
    return lab.ssh(lab.server, f"test -e {path}", check=False).returncode == 0


def _skipped_tasks(run) -> set[str]:
    return set(re.findall(r"TASK \[dervish\.backup\.backup_server : ([^\]]+)\][^\n]*\nskipping:", run.stdout))


@pytest.fixture(scope="module")
def systemd_site(lab: Lab, tmp_path_factory):
    lab.ssh(lab.server, f"rm -rf {Path(TEXTFILE).parent}")
    assert not _exists(lab, "/run/systemd/system"), "this lab host runs systemd: the test's premise is wrong"
    inventory = _inventory(tmp_path_factory.mktemp("inv"), "systemd", backup_server_scheduler="systemd",
                           backup_server_textfile_path=TEXTFILE)
    first = run_playbook(lab, "site.yml", inventory=inventory)
    assert first.rc == 0, first.stdout[-6000:]
    return inventory, first


def test_systemd_scheduler_installs_units_not_cron_and_runs_no_systemctl(lab: Lab, systemd_site) -> None:
    inventory, first = systemd_site
    for unit in UNITS:
        assert lab.ssh(lab.server, f"stat -c '%U %a' /etc/systemd/system/{unit}").stdout.split() == ["root", "644"]
    assert lab.ssh(lab.server, "stat -c %a /usr/local/sbin/dervish-backup-mail").stdout.strip() == "700"
    assert not _exists(lab, "/etc/cron.d/dervish")
    timer = lab.ssh(lab.server, "cat /etc/systemd/system/dervish-backup.timer").stdout
    assert "\nOnCalendar=*-*-* 04:00:00\n" in timer and "\nPersistent=true\n" in timer  # "0 4 * * *" translated
    service = lab.ssh(lab.server, "cat /etc/systemd/system/dervish-backup.service").stdout
    assert "\nType=oneshot\n" in service and "\nOnFailure=dervish-backup-mail.service\n" in service
    # no running systemd: nothing asked it to reload, enable or start
    assert "Enable and start the timer" in _skipped_tasks(first), first.stdout[-3000:]
    assert "Enable and start the timer" not in first.changed_tasks()
    assert "does not run systemd (no /run/systemd/system): dervish-backup.timer is installed but not enabled" in \
        " ".join(first.stdout.split())
    # node_exporter is not installed here: the textfile's directory is created (root, 0755)
    assert lab.ssh(lab.server, f"stat -c '%U %a' {Path(TEXTFILE).parent}").stdout.split() == ["root", "755"]
    second = run_playbook(lab, "site.yml", inventory=inventory)
    assert second.rc == 0, second.stdout[-4000:]
    assert second.changed_hosts == set(), second.changed


def test_installed_units_pass_systemd_analyze_verify_on_the_server(lab: Lab, systemd_site) -> None:
    units = " ".join(f"/etc/systemd/system/{unit}" for unit in UNITS)
    done = lab.ssh(lab.server, f"systemd-analyze verify {units}", check=False)
    assert (done.returncode, done.stderr.strip(), done.stdout.strip()) == (0, "", "")


def _families(text: str) -> dict:
    """{(name, frozenset(labels)): value}, refusing anything node_exporter would refuse too."""
    assert text.endswith("\n")
    series, names = {}, []
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation and family.name not in names, family.name
        names.append(family.name)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in series, key
            series[key] = sample.value
    return series


def test_a_nightly_run_writes_the_textfile_that_prometheus_parses(lab: Lab, systemd_site) -> None:
    started = time.time()
    run = lab.ssh(lab.server, "/usr/local/sbin/dervish-backup", check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ended = time.time()
    assert lab.ssh(lab.server, f"stat -c '%U %a' {TEXTFILE}").stdout.split() == ["root", "644"]
    # replaced by a rename: no temporary file left beside it
    assert lab.ssh(lab.server, f"ls -A {Path(TEXTFILE).parent}").stdout.split() == ["dervish.prom"]
    series = _families(lab.ssh(lab.server, f"cat {TEXTFILE}").stdout)

    def get(name, **labels):
        return series[(name, frozenset(labels.items()))]

    lab.ssh(lab.server, "mount LABEL=BACKUPDRIVE /backup")  # the run unmounted the drive again
    try:
        status = {row["vault"]: row for row in json.loads(
            lab.ssh(lab.server, "dervish --config /etc/dervish/master.conf status --json").stdout)["vaults"]}
    finally:
        lab.ssh(lab.server, "umount /backup")
    for vault in VAULTS:
        assert started - 2 <= get("dervish_vault_last_success_time_seconds", vault=vault) <= ended + 1
        assert get("dervish_vault_last_status", vault=vault, status="success") == 1
        assert get("dervish_vault_last_status", vault=vault, status="error") == 0
        assert get("dervish_vault_images", vault=vault) == status[vault]["images"] >= 1
        assert get("dervish_vault_good_images", vault=vault) == status[vault]["good_images"]
        assert get("dervish_vault_last_image_bytes", vault=vault) == status[vault]["last_good_bytes"]
        assert status[vault]["last_good_bytes"] > 0 or vault.endswith("-home")  # the lab's /home may be empty
        assert get("dervish_vault_last_new_bytes", vault=vault) == status[vault]["last_good_new_bytes"]
        assert 0 <= get("dervish_vault_last_duration_seconds", vault=vault) <= ended - started + 1
    assert get("dervish_bank_present", bank="/backup/dervish") == 1
    assert started - 1 <= get("dervish_run_end_time_seconds") <= ended + 1
    log = lab.ssh(lab.server, "tail -n 3 /var/log/dervish/backup.log").stdout
    assert "backup run finished: every vault backed up" in log and "WARNING" not in log


def test_an_absent_drive_leaves_the_textfile_as_it_was(lab: Lab, systemd_site) -> None:
    """A run that cannot start writes nothing: the old run's end time is what ages and alerts."""
    if not _exists(lab, TEXTFILE):
        lab.ssh(lab.server, "/usr/local/sbin/dervish-backup")
    before = lab.ssh(lab.server, f"cat {TEXTFILE}").stdout
    loop = (lab.dir / "drive.loop").read_text().strip()
    nodes = lab.ssh(lab.server, f"stat -c '%n %t %T' {loop} {loop}p1 {loop}p2").stdout.splitlines()
    lab.ssh(lab.server, f"rm {loop} {loop}p1 {loop}p2")  # the drive is gone from this host
    try:
        run = lab.ssh(lab.server, "/usr/local/sbin/dervish-backup", check=False)
        assert run.returncode == 2 and "not found" in run.stdout + run.stderr
    finally:
        for line in nodes:
            name, major, minor = line.split()
            lab.ssh(lab.server, f"mknod -m 660 {name} b $((0x{major})) $((0x{minor}))")
    assert lab.ssh(lab.server, f"cat {TEXTFILE}").stdout == before


def test_back_to_cron_removes_the_units(lab: Lab, systemd_site, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, "cron", backup_server_textfile_path=TEXTFILE)
    run = run_playbook(lab, "site.yml", inventory=inventory)
    assert run.rc == 0, run.stdout[-6000:]
    for unit in UNITS:
        assert not _exists(lab, f"/etc/systemd/system/{unit}")
    assert not _exists(lab, "/usr/local/sbin/dervish-backup-mail")
    assert "0 4 * * * root" in lab.ssh(lab.server, "cat /etc/cron.d/dervish").stdout
    assert not (set(SYSTEMD_TASKS) & run.changed_tasks()), run.changed
    again = run_playbook(lab, "site.yml", inventory=inventory)
    assert again.rc == 0 and again.changed_hosts == set(), again.changed
    # and the lab's own inventory (no textfile) puts the server back as the other tests expect it
    back = run_playbook(lab, "site.yml")
    assert back.rc == 0, back.stdout[-4000:]
    assert "--prometheus" not in lab.ssh(lab.server, "cat /usr/local/sbin/dervish-backup").stdout
