"""Expire specs and image times: the subset of Perl's Time::ParseDate that Dirvish configs use.

All datetimes are **naive local wall-clock times** (what ``datetime.now()`` returns and what the
summary files contain). An aware datetime passed in is first converted to local time.

Expire specs (``expire:``, ``expire-default:``, ``--expire``, the spec part of ``expire-rule:``):

* ``never`` or empty: never expires (``None``).
* relative: one or more terms ``[+]N unit`` (``+15 days``, ``+3 months``, ``1 week``,
  ``+1 year 2 months``). Units, case-insensitive, singular or plural: ``sec``/``second``,
  ``min``/``minute``, ``hour``/``hr``, ``day``, ``week``/``wk``, ``month``/``mo``/``mon``,
  ``year``/``yr``.
* absolute: ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM`` or ``YYYY-MM-DD HH:MM:SS`` (``T`` also separates).

Semantics of relative specs (relative to the image time, ``base``):

1. years and months are added together as calendar months; the day of month is clamped to the
   end of the target month (Jan 31 + 1 month = Feb 28, or Feb 29 in a leap year; Feb 29 + 1 year =
   Feb 28);
2. then weeks and days are added as calendar days: the wall-clock time stays the same across a
   DST change (Mar 29 12:00 + 1 day = Mar 30 12:00 although only 23 hours pass);
3. then hours, minutes and seconds are added as elapsed time (real seconds; across the spring
   DST change 01:30 + 1 hour = 03:30 wall-clock).

Unlike Dirvish, an unparsable spec is an error (``ConfigError``), not "1970-01-01 00:00:00".
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime, timedelta
from typing import Optional

from .confgrammar import shorten
from .errors import ConfigError

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_UNITS = {
    "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
    "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
    "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "day": "days", "days": "days",
    "wk": "weeks", "wks": "weeks", "week": "weeks", "weeks": "weeks",
    "mo": "months", "mos": "months", "mon": "months", "mons": "months", "month": "months", "months": "months",
    "yr": "years", "yrs": "years", "year": "years", "years": "years",
}

_TERM_RE = re.compile(r"\+?\s*(\d+)\s*([a-z]+)")
_ABS_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(am|pm)?$")
_HOUR_AMPM_RE = re.compile(r"^(\d{1,2})\s*(am|pm)$")
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[-_ T]?(\d{2})(\d{2})(\d{2})?)?$")

SPEC_HELP = "expected 'never', '+N unit[s]' (sec, min, hour, day, week, month, year) or 'YYYY-MM-DD [HH:MM[:SS]]'"


def _local(dt: datetime) -> datetime:
    if dt.tzinfo is not None:
        return dt.astimezone().replace(tzinfo=None)
    return dt


def is_never(spec: Optional[str]) -> bool:
    """True for ``None``, empty/blank text and ``never`` (any case)."""
    return spec is None or not spec.strip() or spec.strip().lower() == "never"


def add_months(dt: datetime, months: int) -> datetime:
    """Calendar month arithmetic with the day clamped to the end of the target month."""
    total = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return dt.replace(year=year, month=month, day=day)


def add_elapsed(dt: datetime, seconds: int) -> datetime:
    """Add real elapsed seconds to a local wall-clock time (honours DST changes)."""
    if not seconds:
        return dt
    epoch = time.mktime(dt.timetuple()) + dt.microsecond / 1e6
    return datetime.fromtimestamp(epoch + seconds)


def _parse_absolute(text: str) -> Optional[datetime]:
    m = _ABS_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss = m.groups()
    try:
        return datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return None


def _parse_relative(text: str) -> Optional[dict]:
    """``{'years': n, ...}`` for a relative spec, or None."""
    pos = 0
    amounts = {}
    text = text.strip()
    if not text:
        return None
    while pos < len(text):
        m = _TERM_RE.match(text, pos)
        if not m:
            return None
        unit = _UNITS.get(m.group(2))
        if unit is None:
            return None
        amounts[unit] = amounts.get(unit, 0) + int(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos] in " \t,":
            pos += 1
    return amounts


def apply_relative(base: datetime, amounts: dict) -> datetime:
    """Apply parsed relative amounts to ``base`` (see the module docstring for the rules)."""
    result = add_months(base, amounts.get("years", 0) * 12 + amounts.get("months", 0))
    result = result + timedelta(days=amounts.get("weeks", 0) * 7 + amounts.get("days", 0))
    seconds = amounts.get("hours", 0) * 3600 + amounts.get("minutes", 0) * 60 + amounts.get("seconds", 0)
    return add_elapsed(result, seconds)


def check_expire_spec(spec: Optional[str]) -> None:
    """Raise ``ConfigError`` if ``spec`` is not a valid expire spec."""
    parse_expire_spec(spec, datetime(2000, 1, 1))


def parse_expire_spec(spec: Optional[str], base: datetime) -> Optional[datetime]:
    """Expiry time for ``spec`` relative to ``base`` (the image time); ``None`` = never.

    ``ConfigError`` if the spec cannot be parsed.
    """
    if is_never(spec):
        return None
    text = spec.strip().lower()
    absolute = _parse_absolute(text)
    if absolute is not None:
        return absolute
    amounts = _parse_relative(text)
    if amounts is None:
        raise ConfigError(f"invalid expire spec {shorten(spec)}: {SPEC_HELP}")
    try:
        return apply_relative(_local(base), amounts)
    except (ValueError, OverflowError):
        raise ConfigError(f"expire spec {shorten(spec)} reaches beyond the dates this system can represent") from None


def _clock(text: str):
    """(hour, minute, second) for ``22:00``, ``22:00:30``, ``10pm``, ``10:30pm``, or None."""
    m = _CLOCK_RE.match(text)
    if m:
        hh, mm, ss, ampm = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), m.group(4)
    else:
        m = _HOUR_AMPM_RE.match(text)
        if not m:
            return None
        hh, mm, ss, ampm = int(m.group(1)), 0, 0, m.group(2)
    if ampm:
        if not 1 <= hh <= 12:
            return None
        hh = hh % 12 + (12 if ampm == "pm" else 0)
    if hh > 23 or mm > 59 or ss > 59:
        return None
    return hh, mm, ss


def parse_image_time(text: str, now: datetime) -> datetime:
    """Parse ``--image-time`` / ``image-time:`` / a ``Runall:`` time (see :func:`_parse_image_time`)."""
    try:
        return _parse_image_time(text, now)
    except (ValueError, OverflowError):
        raise ConfigError(f"image time {shorten(text)} lies beyond the dates this system can represent") from None


def _parse_image_time(text: str, now: datetime) -> datetime:
    """Parse ``--image-time`` / ``image-time:`` / a ``Runall:`` time.

    Accepted: ``now``; a clock time ``HH:MM[:SS]`` or ``10pm`` (today, or **yesterday** if that
    would lie in the future, as Dirvish's "time without date forced into the past");
    ``today``/``yesterday`` optionally followed by a clock time; ``YYYY-MM-DD [HH:MM[:SS]]``;
    ``YYYYMMDD[HHMM[SS]]``; ``N unit[s] ago`` / ``-N unit[s]`` (same units as expire specs).
    ``ConfigError`` if unparsable.
    """
    now = _local(now).replace(microsecond=0)
    raw = text
    text = (text or "").strip().lower()
    if text in ("", "now"):
        return now
    absolute = _parse_absolute(text)
    if absolute is not None:
        return absolute
    m = _COMPACT_RE.match(text)
    if m:
        y, mo, d, hh, mm, ss = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        except ValueError:
            pass
    day_word = None
    rest = text
    for word in ("today", "yesterday"):
        if text == word or text.startswith(word + " "):
            day_word, rest = word, text[len(word):].strip()
            break
    if day_word is not None:
        clock = _clock(rest) if rest else (0, 0, 0)
        if clock is not None:
            day = now.date() - timedelta(days=1 if day_word == "yesterday" else 0)
            return datetime(day.year, day.month, day.day, *clock)
    clock = _clock(text)
    if clock is not None:
        result = now.replace(hour=clock[0], minute=clock[1], second=clock[2])
        if result > now:
            result -= timedelta(days=1)
        return result
    rel = None
    if text.endswith(" ago"):
        rel = text[: -len(" ago")]
    elif text.startswith("-"):
        rel = text[1:]
    if rel is not None:
        amounts = _parse_relative(rel.replace("-", " "))
        if amounts is not None:
            back = add_months(now, -(amounts.get("years", 0) * 12 + amounts.get("months", 0)))
            back = back - timedelta(days=amounts.get("weeks", 0) * 7 + amounts.get("days", 0))
            secs = amounts.get("hours", 0) * 3600 + amounts.get("minutes", 0) * 60 + amounts.get("seconds", 0)
            return add_elapsed(back, -secs)
    raise ConfigError(
        f"invalid image time {shorten(raw)} (expected 'now', 'HH:MM[:SS]', 'yesterday HH:MM', "
        "'YYYY-MM-DD [HH:MM[:SS]]' or 'N units ago')"
    )


def format_time(dt: Optional[datetime]) -> str:
    """``YYYY-MM-DD HH:MM:SS`` as used in summaries and hist files ("" for None)."""
    return dt.strftime(TIME_FORMAT) if dt is not None else ""


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """Inverse of :func:`format_time`; None for missing or malformed text."""
    if not text:
        return None
    return _parse_absolute(text.strip())


def format_expire(spec: Optional[str], when: Optional[datetime]) -> str:
    """The summary ``Expire:`` value: ``+15 days == 2026-12-11 12:24:14`` or ``Never``."""
    if is_never(spec) or when is None:
        return "Never"
    return f"{spec.strip()} == {format_time(when)}"


def parse_expire_field(text: Optional[str]) -> Optional[datetime]:
    """Read back a summary ``Expire:`` value; None = never.

    Like dirvish-expire, the part after ``==`` is the expiry time. A value without ``==`` that is
    an absolute date is accepted too. ``ConfigError`` if the value cannot be understood.
    """
    if text is None:
        return None
    value = text.strip()
    if "==" in value:
        value = value.split("==", 1)[1].strip()
    if is_never(value):
        return None
    when = _parse_absolute(value)
    if when is None:
        raise ConfigError(f"invalid expiration time {shorten(text)}")
    return when
