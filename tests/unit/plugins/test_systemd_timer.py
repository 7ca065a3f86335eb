"""backup_server_scheduler: systemd -- the timer's OnCalendar= and the units, checked by systemd's own tools.

The cron time is translated into OnCalendar= (``cron_to_oncalendar``, filter ``oncalendar``); the
proof is systemd-analyze itself: for each cron time, systemd's next elapses from a fixed base time
are the minutes an independent cron matcher (below, written from crontab(5)) picks. The rendered
units pass ``systemd-analyze verify`` (in a scratch root that has the programs they start), with
nothing on stderr (an unknown key is only a warning there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.dervish.backup.plugins.filter.site import oncalendar
from ansible_collections.dervish.backup.plugins.module_utils.site_model import cron_to_oncalendar, validate_site

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "backup_server"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _field_values(text: str, low: int, high: int, names: list[str], offset: int) -> set[int]:
    def number(word: str) -> int:
        return names.index(word.lower()) + offset if word.lower() in names else int(word)

    values: set[int] = set()
    for item in text.split(","):
        rng, dummy, step = item.partition("/")
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            start, end = (number(w) for w in rng.split("-"))
        else:
            start = end = number(rng)
            if step:
                end = high
        values.update(range(start, end + 1, int(step or 1)))
    return values


def cron_fires(schedule: str, when: datetime) -> bool:
    """crontab(5): minute, hour and month must match; the day matches by day of month OR day of week
    when both are restricted (neither starts with '*'), else by both."""
    minute, hour, dom, month, dow = schedule.split()
    if when.minute not in _field_values(minute, 0, 59, [], 0) or when.hour not in _field_values(hour, 0, 23, [], 0):
        return False
    if when.month not in _field_values(month, 1, 12, MONTHS, 1):
        return False
    dom_ok = when.day in _field_values(dom, 1, 31, [], 1)
    dow_ok = (when.isoweekday() % 7) in {d % 7 for d in _field_values(dow, 0, 7, DAYS, 0)}
    if not dom.startswith("*") and not dow.startswith("*"):
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def cron_next(schedule: str, base: datetime, count: int) -> list[datetime]:
    found, when = [], base + timedelta(minutes=1)
    while len(found) < count:
        if cron_fires(schedule, when):
            found.append(when)
        when += timedelta(minutes=1)
    return found


def systemd_next(calendar: str, base: datetime, count: int) -> list[datetime]:
    done = subprocess.run([ANALYZE, "calendar", f"--iterations={count}", f"--base-time={base:%Y-%m-%d %H:%M:%S}",
                           "--", calendar], capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"})
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") for stamp in stamps]


@pytest.mark.parametrize(("schedule", "calendar"), [
    ("0 4 * * *", "*-*-* 04:00:00"),
    ("30 2 * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"),
    ("*/15 1,3 * * *", "*-*-* 01,03:00,15,30,45:00"),
    ("0 4 1 * *", "*-*-01 04:00:00"),
    ("0 4 * * 0,7", "Sun *-*-* 04:00:00"),
    ("5 22 * jan-mar sun", "Sun *-01,02,03-* 22:05:00"),
    ("0 4 */2 * mon", "Mon *-*-01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31 04:00:00"),
    ("0 0-23/6 * * *", "*-*-* 00,06,12,18:00:00"),
])
def test_a_cron_time_becomes_the_calendar_time_that_fires_at_the_same_minutes(schedule: str, calendar: str) -> None:
    assert cron_to_oncalendar(schedule) == calendar
    assert oncalendar(schedule) == calendar
    if ANALYZE:
        base = datetime(2026, 1, 1, 0, 0, 0)
        assert systemd_next(calendar, base, 6) == cron_next(schedule, base, 6)


@pytest.mark.parametrize(("macro", "calendar"), [
    ("@daily", "*-*-* 00:00:00"), ("@midnight", "*-*-* 00:00:00"), ("@hourly", "*-*-* *:00:00"),
    ("@weekly", "Sun *-*-* 00:00:00"), ("@monthly", "*-*-01 00:00:00"), ("@yearly", "*-01-01 00:00:00")])
def test_cron_macros(macro: str, calendar: str) -> None:
    assert cron_to_oncalendar(macro) == calendar


@pytest.mark.parametrize(("schedule", "reason"), [
    ("@reboot", "is not a time of day"),
    ("0 4 1 * 1", "day of month OR the day of week"),
])
def test_what_a_calendar_time_cannot_say_is_an_error(schedule: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        cron_to_oncalendar(schedule)
    with pytest.raises(AnsibleFilterError, match="set backup_server_timer_oncalendar"):
        oncalendar(schedule)


# ---------------------------------------------------------------------------- the inventory check

def spec(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"]["main"]["options"]


def check(server_vars: dict) -> list[str]:
    hostvars = {"backup": {"ansible_host": "192.0.2.10", **server_vars}, "laptop1": {}}
    groups = {"backup_servers": ["backup"], "backup_clients": ["laptop1"]}
    return validate_site(hostvars, groups, spec("backup_client"), spec("backup_server"))


def test_systemd_with_a_cron_time_it_cannot_translate_fails_naming_the_variables() -> None:
    problems = check({"backup_server_scheduler": "systemd", "backup_server_schedule": "@reboot"})
    assert problems == ["backup: backup_server_schedule: '@reboot' has no systemd calendar equivalent: @reboot is "
                        "not a time of day; set backup_server_timer_oncalendar (e.g. '*-*-* 04:00:00')"]
    # cron reads @reboot: fine while cron is the scheduler, or with an explicit calendar time
    assert check({"backup_server_schedule": "@reboot"}) == []
    assert check({"backup_server_scheduler": "systemd", "backup_server_schedule": "@reboot",
                  "backup_server_timer_oncalendar": "Mon..Fri 02:30"}) == []


@needs_analyze
def test_a_calendar_time_systemd_does_not_read_is_refused_by_systemd_analyze() -> None:
    problems = check({"backup_server_scheduler": "systemd", "backup_server_timer_oncalendar": "every night"})
    assert len(problems) == 1 and problems[0].startswith(
        "backup: backup_server_timer_oncalendar: OnCalendar='every night' is not a systemd calendar time: "), problems
    assert "Failed to parse calendar specification" in problems[0]


def test_an_unknown_scheduler_is_refused() -> None:
    problems = check({"backup_server_scheduler": "anacron"})
    assert len(problems) == 1 and "backup_server_scheduler" in problems[0] and "cron, systemd" in problems[0], problems


@pytest.mark.parametrize(("path", "expected"), [
    ("relative/dervish.prom", "is not absolute"),
    ("/var/lib/prometheus/node-exporter/../dervish.prom", "'..'"),
    ("/var/lib/prometheus/node-exporter/dervish.txt", "reads only files named *.prom"),
])
def test_a_bad_textfile_path_is_refused(path: str, expected: str) -> None:
    problems = check({"backup_server_textfile_path": path})
    assert len(problems) == 1 and problems[0].startswith("backup: backup_server_textfile_path: "), problems
    assert expected in problems[0]


def test_a_textfile_path_in_node_exporters_directory_passes() -> None:
    assert check({"backup_server_textfile_path": "/var/lib/prometheus/node-exporter/dervish.prom"}) == []


# ------------------------------------------------------------------------------------ the units

def render_units(out: Path, mailto: str, calendar: str) -> list[Path]:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["quote"] = lambda text: "'" + str(text).replace("'", "'\"'\"'") + "'"
    names = ["dervish-backup.service", "dervish-backup.timer"] + (["dervish-backup-mail.service"] if mailto else [])
    values = {"ansible_managed": "Ansible managed", "backup_server_mailto": mailto,
              "__backup_server_timer_oncalendar": calendar}
    units = []
    for name in names:
        unit = out / "etc" / "systemd" / "system" / name
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(env.get_template(f"etc/systemd/system/{name}.j2").render(values))
        units.append(unit)
    script = out / "usr" / "local" / "sbin"
    script.mkdir(parents=True, exist_ok=True)
    for program in ("dervish-backup", "dervish-backup-mail"):  # what ExecStart= runs must exist and be executable
        (script / program).write_text("#!/bin/sh\n")
        (script / program).chmod(0o700)
    return units


def scratch_root(tmp_path: Path) -> Path:
    """A root for `systemd-analyze verify --root`: the system's own units (sysinit.target, ...) and a shell."""
    root = tmp_path / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "lib").symlink_to("usr/lib")
    return root


@needs_analyze
@pytest.mark.parametrize("mailto", ["root", ""])
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path, mailto: str) -> None:
    root = scratch_root(tmp_path)
    units = render_units(root, mailto, cron_to_oncalendar("0 4 * * *"))
    done = subprocess.run([ANALYZE, "verify", f"--root={root}", *map(str, units)], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
    timer = units[1].read_text()
    assert "\nOnCalendar=*-*-* 04:00:00\n" in timer and "\nPersistent=true\n" in timer
    service = units[0].read_text()
    assert "\nType=oneshot\n" in service and "\nExecStart=/usr/local/sbin/dervish-backup\n" in service
    assert ("\nOnFailure=dervish-backup-mail.service\n" in service) == bool(mailto)


@needs_analyze
def test_verify_catches_a_broken_timer(tmp_path: Path) -> None:
    """The check above can fail: a calendar time systemd cannot read makes verify refuse the timer."""
    root = scratch_root(tmp_path)
    units = render_units(root, "root", "every night")
    done = subprocess.run([ANALYZE, "verify", f"--root={root}", str(units[1])], capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0 and "Failed to parse calendar specification" in done.stderr
