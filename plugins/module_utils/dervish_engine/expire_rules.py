"""``expire-rule:`` lines: crontab form and Time::Period form, and the choice of an image's expiry.

A rule is either

* **crontab form** ``MIN HR DOM MON DOW [spec]``: ``*`` (any), numbers, lists ``1,4``, ranges
  ``1-7``; DOW and MON also take names (``su``/``sun``/``sunday``, ``jan``/``january``); or
* **Time::Period form**: ``scale { range ... } [scale { ... }] [, sub-period ...] [spec]``, e.g.
  ``wd { sun } md { 1-7 } +1 year``. Scales: ``year``/``yr``, ``month``/``mo``, ``week``/``wk``
  (week of the month, 1-6, weeks start on Sunday), ``yday``/``yd`` (1-366), ``mday``/``md``
  (1-31), ``wday``/``wd``, ``hour``/``hr`` (0-23 or ``12am``, ``1am``-``11am``, ``12noon``,
  ``12pm``, ``1pm``-``11pm``), ``minute``/``min`` (0-59), ``second``/``sec`` (0-59). Ranges
  ``a-b`` wrap around when ``a > b`` (``mo { nov-feb }``), except for years.

**Day-of-week numbers are Time::Period's: 1 = Sunday, 2 = Monday, ... 7 = Saturday** (also in the
crontab form, exactly as in Dirvish; cron's own 0 = Sunday is rejected, and 7 means Saturday).
Within one sub-period all scales must match (a scale repeated extends its ranges); sub-periods
separated by ``,`` are alternatives. The crontab form is translated like Dirvish does:
``* 10-20 1-7 1,4 su +1 year`` == ``hr { 10-20 } md { 1-7 } mo { 1 4 } wd { su } +1 year``.

The spec after the period is an expire spec (see :mod:`timespec`); empty or ``never`` means the
image never expires. Invalid rules raise ``ConfigError`` when the configuration is loaded (Dirvish
only warned at backup time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterable, List, Optional, Tuple

from .confgrammar import shorten as _q  # quoted text in messages, cut to a readable length
from .errors import ConfigError
from .timespec import check_expire_spec, is_never

SCALE_CODES = {
    "year": "yr", "month": "mo", "week": "wk", "yday": "yd", "mday": "md", "wday": "wd",
    "hour": "hr", "minute": "min", "second": "sec",
}
_CODES = set(SCALE_CODES.values())
_BOUNDS = {"mo": (1, 12), "wk": (1, 6), "yd": (1, 366), "md": (1, 31), "wd": (1, 7),
           "hr": (0, 23), "min": (0, 59), "sec": (0, 59)}
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_CRON_SCALES = ("min", "hr", "md", "mo", "wd")
_CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")

Range = Tuple[int, int]
SubPeriod = List[Tuple[str, List[Range]]]


@dataclass
class ExpireRule:
    """One parsed ``expire-rule:`` line.

    ``text`` is the rule as written, ``spec`` the expire spec ("" = never), ``period`` the
    normalised Time::Period text ("" = always matches), ``sub_periods`` the parsed matcher, and
    ``source`` where the rule came from (``file:line``, filled in by the config loader).
    """

    text: str
    spec: str
    period: str
    sub_periods: List[SubPeriod] = field(default_factory=list)
    source: Optional[str] = None

    @property
    def never(self) -> bool:
        return is_never(self.spec)

    def matches(self, when: datetime) -> bool:
        """True if ``when`` (local wall-clock time) falls into the rule's period."""
        if not self.sub_periods:
            return True
        values = time_values(when)
        for sub in self.sub_periods:
            results: Dict[str, bool] = {}
            for scale, ranges in sub:
                hit = any(_in_range(scale, r, values[scale], when.year) for r in ranges)
                results[scale] = results.get(scale, False) or hit
            if all(results.values()):
                return True
        return False


def time_values(when: datetime) -> Dict[str, int]:
    """Time::Period's view of a time: wd 1=Sunday..7=Saturday, wk = week of month from 1."""
    wd = when.isoweekday() % 7 + 1
    # week of month: starts at 1 and grows on every Sunday after the 1st (Time::Period getTimeVars)
    first_wd0 = (when.replace(day=1).isoweekday() % 7)  # 0 = Sunday
    sundays = sum(1 for d in range(2, when.day + 1) if (first_wd0 + d - 1) % 7 == 0)
    return {"yr": when.year, "mo": when.month, "wk": 1 + sundays, "yd": when.timetuple().tm_yday,
            "md": when.day, "wd": wd, "hr": when.hour, "min": when.minute, "sec": when.second}


def _full_year(v: int, year: int) -> int:
    return (year // 100) * 100 + v if v <= 99 else v


def _in_range(scale: str, rng: Range, value: int, year: int) -> bool:
    lo, hi = rng
    if scale == "yr":
        lo, hi = sorted((_full_year(lo, year), _full_year(hi, year)))
        return lo <= value <= hi
    if lo <= hi:
        return lo <= value <= hi
    return value >= lo or value <= hi


def _named(word: str, names: List[str], minlen: int) -> Optional[int]:
    if len(word) < minlen:
        return None
    for i, name in enumerate(names):
        if name.startswith(word):
            return i + 1
    return None


def _value(scale: str, word: str, rule: str) -> int:
    if scale == "mo" and word.isalpha():
        v = _named(word, _MONTHS, 3)
        if v is None:
            raise ConfigError(f"invalid expire rule {_q(rule)}: unknown month {_q(word)} (use jan..dec or 1-12)")
        return v
    if scale == "wd" and word.isalpha():
        v = _named(word, _DAYS, 2)
        if v is None:
            raise ConfigError(f"invalid expire rule {_q(rule)}: unknown day {_q(word)} (use su..sa, sun..sat or 1-7)")
        return v
    if scale == "hr":
        m = re.match(r"^(\d+)(am|pm|noon)$", word)
        if m:
            h, suffix = int(m.group(1)), m.group(2)
            if suffix == "noon":
                if h != 12:
                    raise ConfigError(f"invalid expire rule {_q(rule)}: {_q(word)} (only 12noon exists)")
                return 12
            if not 1 <= h <= 12:
                raise ConfigError(f"invalid expire rule {_q(rule)}: hour {_q(word)} out of range")
            return h % 12 + (12 if suffix == "pm" else 0)
    if not word.isdigit():
        raise ConfigError(f"invalid expire rule {_q(rule)}: {_q(word)} is not a valid {scale} value")
    v = int(word)
    if scale == "yr":
        if 99 < v < 1970:
            raise ConfigError(f"invalid expire rule {_q(rule)}: year {_q(word)} (use 0-99 or >= 1970)")
        return v
    lo, hi = _BOUNDS[scale]
    if not lo <= v <= hi:
        hint = ""
        if scale == "wd":
            hint = "; days of the week are numbered 1=Sunday .. 7=Saturday (Time::Period)"
        raise ConfigError(f"invalid expire rule {_q(rule)}: {scale} value {v} out of range {lo}-{hi}{hint}")
    return v


def parse_period(period: str, rule: Optional[str] = None) -> List[SubPeriod]:
    """Parse Time::Period text into sub-periods; ``ConfigError`` if malformed."""
    rule = rule if rule is not None else period
    text = period.strip().lower()
    if not text:
        return []
    subs: List[SubPeriod] = []
    for sub_text in text.split(","):
        sub_text = sub_text.strip()
        sub: SubPeriod = []
        pos = 0
        for m in re.finditer(r"([a-z]*)\s*\{([^{}]*)\}\s*", sub_text):
            if m.start() != pos:
                raise ConfigError(f"invalid expire rule {_q(rule)}: cannot parse {_q(sub_text[pos:m.start()])}")
            pos = m.end()
            name = m.group(1)
            scale = SCALE_CODES.get(name, name)
            if scale not in _CODES:
                raise ConfigError(
                    f"invalid expire rule {_q(rule)}: unknown scale {_q(name)} (use yr mo wk yd md wd hr min sec)"
                )
            data = re.sub(r"(\w+)\s*-\s*(\w+)", r"\1-\2", m.group(2)).split()
            if not data:
                raise ConfigError(f"invalid expire rule {_q(rule)}: empty range for {scale}")
            ranges: List[Range] = []
            for item in data:
                if "-" in item:
                    a, sep, b = item.partition("-")
                    ranges.append((_value(scale, a, rule), _value(scale, b, rule)))
                else:
                    v = _value(scale, item, rule)
                    ranges.append((v, v))
            sub.append((scale, ranges))
        if pos != len(sub_text) or not sub:
            raise ConfigError(f"invalid expire rule {_q(rule)}: cannot parse {_q(sub_text[pos:] or sub_text)}")
        subs.append(sub)
    return subs


def parse_rule(text: str) -> ExpireRule:
    """Parse one ``expire-rule:`` line; ``ConfigError`` if invalid."""
    rule = " ".join(text.split())
    if not rule:
        raise ConfigError("empty expire rule")
    if "{" in rule or "}" in rule:
        m = re.match(r"^(.*\})\s*([^}]*)$", rule)
        if not m:
            raise ConfigError(f"invalid expire rule {_q(rule)}: unbalanced braces")
        period, spec = m.group(1).strip(), m.group(2).strip()
        if period.count("{") != period.count("}"):
            raise ConfigError(f"invalid expire rule {_q(rule)}: unbalanced braces")
    else:
        fields = rule.split(None, 5)
        if len(fields) < 5 or any(f.startswith("+") for f in fields[:5]):
            raise ConfigError(
                f"invalid expire rule {_q(rule)}: crontab form needs MIN HR DOM MON DOW then the expire spec"
            )
        spec = fields[5] if len(fields) > 5 else ""
        parts = []
        for scale, name, value in zip(_CRON_SCALES, _CRON_NAMES, fields[:5]):
            if value == "*":
                continue
            if "/" in value or "*" in value:
                raise ConfigError(f"invalid expire rule {_q(rule)}: {name} field {_q(value)}: "
                                  "steps and partial '*' are not supported")
            parts.append("{} {{ {} }}".format(scale, value.replace(",", " ")))
        period = " ".join(parts)
    sub_periods = parse_period(period, rule)
    if not is_never(spec):
        try:
            check_expire_spec(spec)
        except ConfigError as exc:
            raise ConfigError(f"invalid expire rule {_q(rule)}: {exc.message}") from None
    return ExpireRule(text=text.strip(), spec=spec, period=period, sub_periods=sub_periods)


def choose_expire(
    cfg_expire: Optional[str],
    rules: Iterable,
    expire_default: Optional[str],
    image_time: datetime,
) -> Tuple[Optional[str], Optional[str]]:
    """Pick the expire spec of an image: ``(spec or None for Never, matched rule text or None)``.

    ``expire:``/``--expire`` wins when set (``never`` there means Never). Otherwise the **last**
    rule matching ``image_time`` wins; a matching rule with empty or ``never`` spec gives Never
    (and still reports the rule). No match: ``expire-default``; none: Never. ``rules`` may hold
    ``ExpireRule`` objects or rule strings.
    """
    if cfg_expire is not None and cfg_expire.strip():
        return (None if is_never(cfg_expire) else cfg_expire.strip()), None
    parsed = [r if isinstance(r, ExpireRule) else parse_rule(r) for r in rules]
    for rule in reversed(parsed):
        if rule.matches(image_time):
            return (None if rule.never else rule.spec), rule.text
    if is_never(expire_default):
        return None, None
    return expire_default.strip(), None
