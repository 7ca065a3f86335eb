"""Expire specs and image times: units, month ends, leap years, DST, errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from dervish_engine.errors import ConfigError
from dervish_engine.timespec import (
    format_expire,
    format_time,
    parse_expire_field,
    parse_expire_spec,
    parse_image_time,
    parse_time,
)

BASE = datetime(2026, 11, 26, 12, 24, 14)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("+15 days", datetime(2026, 12, 11, 12, 24, 14)),
        ("15 days", datetime(2026, 12, 11, 12, 24, 14)),
        ("+1 day", datetime(2026, 11, 27, 12, 24, 14)),
        ("1 week", datetime(2026, 12, 3, 12, 24, 14)),
        ("+2 WEEKS", datetime(2026, 12, 10, 12, 24, 14)),
        ("+3 wk", datetime(2026, 12, 17, 12, 24, 14)),
        ("+3 months", datetime(2027, 2, 26, 12, 24, 14)),
        ("+1 mo", datetime(2026, 12, 26, 12, 24, 14)),
        ("+1 year", datetime(2027, 11, 26, 12, 24, 14)),
        ("+2 yrs", datetime(2028, 11, 26, 12, 24, 14)),
        ("+1 year 2 months", datetime(2028, 1, 26, 12, 24, 14)),
        ("+1 year +2 months +3 days", datetime(2028, 1, 29, 12, 24, 14)),
        ("+36 hours", datetime(2026, 11, 28, 0, 24, 14)),
        ("+2 hr", datetime(2026, 11, 26, 14, 24, 14)),
        ("+90 min", datetime(2026, 11, 26, 13, 54, 14)),
        ("+10 minutes", datetime(2026, 11, 26, 12, 34, 14)),
        ("+46 sec", datetime(2026, 11, 26, 12, 25, 0)),
        ("+1 second", datetime(2026, 11, 26, 12, 24, 15)),
        ("+15days", datetime(2026, 12, 11, 12, 24, 14)),
        ("2027-01-31", datetime(2027, 1, 31)),
        ("2027-01-31 08:30", datetime(2027, 1, 31, 8, 30)),
        ("2027-01-31 08:30:05", datetime(2027, 1, 31, 8, 30, 5)),
    ],
)
def test_specs(spec, expected):
    assert parse_expire_spec(spec, BASE) == expected


@pytest.mark.parametrize("spec", [None, "", "  ", "never", "Never", "NEVER"])
def test_never(spec):
    assert parse_expire_spec(spec, BASE) is None


@pytest.mark.parametrize("spec", ["+15 dayz", "soon", "+ days", "15", "-3 days", "2027-13-01", "+1.5 days",
                                  "tomorrow"])
def test_invalid_specs_are_errors(spec):
    with pytest.raises(ConfigError, match="invalid expire spec"):
        parse_expire_spec(spec, BASE)


@pytest.mark.parametrize(
    ("base", "spec", "expected"),
    [
        (datetime(2026, 1, 31, 10), "+1 month", datetime(2026, 2, 28, 10)),
        (datetime(2028, 1, 31, 10), "+1 month", datetime(2028, 2, 29, 10)),  # leap year
        (datetime(2026, 3, 31, 10), "+1 month", datetime(2026, 4, 30, 10)),
        (datetime(2026, 8, 31, 10), "+6 months", datetime(2027, 2, 28, 10)),
        (datetime(2028, 2, 29, 10), "+1 year", datetime(2029, 2, 28, 10)),
        (datetime(2028, 2, 29, 10), "+4 years", datetime(2032, 2, 29, 10)),
        (datetime(2026, 12, 31, 23, 59, 59), "+1 second", datetime(2027, 1, 1)),
        (datetime(2026, 1, 31, 10), "+1 month 1 day", datetime(2026, 3, 1, 10)),  # months first, then days
    ],
)
def test_month_ends_and_leap_years(base, spec, expected):
    assert parse_expire_spec(spec, base) == expected


def test_dst_days_keep_wall_clock_hours_are_elapsed(berlin_tz):
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00 (spring), 2026-10-25 03:00 -> 02:00 (autumn)
    assert parse_expire_spec("+1 day", datetime(2026, 3, 28, 12)) == datetime(2026, 3, 29, 12)
    assert parse_expire_spec("+1 week", datetime(2026, 10, 20, 22)) == datetime(2026, 10, 27, 22)
    assert parse_expire_spec("+1 month", datetime(2026, 3, 15, 1, 30)) == datetime(2026, 4, 15, 1, 30)
    assert parse_expire_spec("+24 hours", datetime(2026, 3, 28, 12)) == datetime(2026, 3, 29, 13)
    assert parse_expire_spec("+1 hour", datetime(2026, 3, 29, 1, 30)) == datetime(2026, 3, 29, 3, 30)
    assert parse_expire_spec("+24 hours", datetime(2026, 10, 24, 12)) == datetime(2026, 10, 25, 11)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", BASE),
        ("", BASE),
        ("10:00", datetime(2026, 11, 26, 10, 0)),
        ("22:00", datetime(2026, 11, 25, 22, 0)),  # in the future today -> yesterday
        ("12:24:14", BASE),
        ("12:24:15", datetime(2026, 11, 25, 12, 24, 15)),
        ("10pm", datetime(2026, 11, 25, 22, 0)),
        ("9:30am", datetime(2026, 11, 26, 9, 30)),
        ("12am", datetime(2026, 11, 26, 0, 0)),
        ("yesterday", datetime(2026, 11, 25)),
        ("yesterday 22:00", datetime(2026, 11, 25, 22)),
        ("today 08:15", datetime(2026, 11, 26, 8, 15)),
        ("2026-11-20 22:00", datetime(2026, 11, 20, 22)),
        ("2026-11-20", datetime(2026, 11, 20)),
        ("20261120220000", datetime(2026, 11, 20, 22)),
        ("3 days ago", datetime(2026, 11, 23, 12, 24, 14)),
        ("-1 month", datetime(2026, 10, 26, 12, 24, 14)),
    ],
)
def test_image_time(text, expected):
    assert parse_image_time(text, BASE.replace(microsecond=123)) == expected


@pytest.mark.parametrize("text", ["teatime", "25:00", "13pm", "2026-02-30", "yesterday at noon"])
def test_image_time_invalid(text):
    with pytest.raises(ConfigError, match="invalid image time"):
        parse_image_time(text, BASE)


def test_format_and_parse_expire_field():
    when = parse_expire_spec("+15 days", BASE)
    assert format_expire("+15 days", when) == "+15 days == 2026-12-11 12:24:14"
    assert format_expire(None, None) == "Never"
    assert format_expire("never", None) == "Never"
    assert parse_expire_field("+15 days == 2026-12-11 12:24:14") == when
    assert parse_expire_field("Never") is None
    assert parse_expire_field(None) is None
    assert parse_expire_field("") is None
    assert parse_expire_field("2026-12-11 12:24:14") == when
    # what Dirvish 1.2.1 stored for an unparsable spec: expired long ago
    assert parse_expire_field("+15 dayz == 1970-01-01 00:00:00") == datetime(1970, 1, 1)
    with pytest.raises(ConfigError, match="invalid expiration time"):
        parse_expire_field("+15 days == garbage")


def test_format_time_roundtrip():
    assert format_time(BASE) == "2026-11-26 12:24:14"
    assert parse_time("2026-11-26 12:24:14") == BASE
    assert format_time(None) == "" and parse_time(None) is None and parse_time("x") is None


def test_dates_beyond_the_calendar_are_config_errors():
    from dervish_engine.timespec import parse_image_time

    with pytest.raises(ConfigError, match="beyond the dates"):
        parse_expire_spec("+9999 years", datetime(2026, 11, 26))
    with pytest.raises(ConfigError, match="beyond the dates"):
        parse_image_time("99999999 days ago", datetime(2026, 11, 26))
