"""Expire rules: crontab and Time::Period forms, 1=Sunday, last match wins; cross-checked with Perl."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from datetime import datetime, timedelta

import pytest

from dervish_engine.errors import ConfigError
from dervish_engine.expire_rules import choose_expire, parse_rule, time_values

# reference §3.3, the dirvish.conf(5) example
MAN_RULES = [
    "*   *     *   *         1    +3 months",
    "*   *     1-7 *         su   +1 year",
    "*   *     1-7 1,4,7,10  1    never",
    "*   10-20 *   *         *    +10 days",
]
MAN_RULES_PERIOD = [
    "wd { 1 } +3 months",
    "md { 1-7 } wd { su } +1 year",
    "md { 1-7 } mo { 1 4 7 10 } wd { 1 } never",
    "hr { 10-20 } +10 days",
]


def choose(when, rules=None, expire=None, default="+5 weeks"):
    if rules is None:
        rules = MAN_RULES
    return choose_expire(expire, [parse_rule(r) for r in rules], default, when)


@pytest.mark.parametrize("rules", [MAN_RULES, MAN_RULES_PERIOD])
@pytest.mark.parametrize(
    ("when", "spec", "rule_index"),
    [
        (datetime(2026, 11, 1, 8), "+1 year", 1),  # first Sunday of November, morning
        (datetime(2026, 11, 8, 8), "+3 months", 0),  # a later Sunday: DOW 1 is Sunday
        (datetime(2026, 11, 2, 8), "+5 weeks", None),  # a Monday does not match DOW 1
        (datetime(2026, 10, 4, 8), None, 2),  # first Sunday of a quarter: never
        (datetime(2026, 10, 4, 12), "+10 days", 3),  # ... but at noon the last rule wins
        (datetime(2026, 11, 3, 20, 59), "+10 days", 3),
        (datetime(2026, 11, 3, 21, 0), "+5 weeks", None),
    ],
)
def test_man_page_example(rules, when, spec, rule_index):
    got_spec, got_rule = choose(when, rules)
    assert got_spec == spec
    assert got_rule == (rules[rule_index].strip() if rule_index is not None else None)


def test_cron_form_translates_like_dirvish():
    rule = parse_rule("* 10-20 1-7 1,4 su +1 year")
    assert rule.period == "hr { 10-20 } md { 1-7 } mo { 1 4 } wd { su }"
    assert rule.spec == "+1 year"
    assert parse_rule("* * * * *").period == "" and parse_rule("* * * * *").never
    assert parse_rule("* * * * * +1 day").matches(datetime(2001, 1, 1))


def test_precedence():
    sunday = datetime(2026, 11, 8, 8)
    assert choose(sunday, expire="+1 day") == ("+1 day", None)  # expire: / --expire wins
    assert choose(sunday, expire="never") == (None, None)
    assert choose(datetime(2026, 11, 2, 8), rules=[], default=None) == (None, None)
    assert choose(datetime(2026, 11, 2, 8), rules=[], default="never") == (None, None)
    assert choose(sunday, rules=["* * * * 1", "* * * * 2 +1 day"]) == (None, "* * * * 1")  # empty spec = Never
    # strings are accepted too
    assert choose_expire(None, ["* * * * * +2 days"], None, sunday) == ("+2 days", "* * * * * +2 days")


@pytest.mark.parametrize(
    ("period", "when", "expected"),
    [
        ("wd { mon-fri } hr { 9am-4pm }", datetime(2026, 11, 27, 16, 59), True),
        ("wd { mon-fri } hr { 9am-4pm }", datetime(2026, 11, 27, 17, 0), False),
        ("wd { mon-fri } hr { 9am-4pm }", datetime(2026, 11, 28, 10), False),  # Saturday
        ("wd {Mon Wed Fri} hr {9am-4pm}, wd{Tue Thu} hr {9am-2pm}", datetime(2026, 11, 26, 14), True),
        ("wd {Mon Wed Fri} hr {9am-4pm}, wd{Tue Thu} hr {9am-2pm}", datetime(2026, 11, 26, 15), False),
        ("month { nov-feb }", datetime(2026, 1, 15), True),
        ("month { nov-feb }", datetime(2026, 3, 1), False),
        ("mo {Jan Feb} mo {Nov Dec}", datetime(2026, 12, 1), True),
        ("hr { 12noon }", datetime(2026, 1, 1, 12), True),
        ("hr { 12am }", datetime(2026, 1, 1, 0), True),
        ("hour { 10pm-2am }", datetime(2026, 1, 1, 1), True),
        ("hour { 10pm-2am }", datetime(2026, 1, 1, 3), False),
        ("yd { 1 }", datetime(2026, 1, 1), True),
        ("yday { 366 }", datetime(2028, 12, 31), True),
        ("yr { 2026 }", datetime(2026, 5, 5), True),
        ("yr { 26-27 }", datetime(2027, 5, 5), True),
        ("yr { 1999 }", datetime(2026, 5, 5), False),
        ("wk { 1 }", datetime(2026, 11, 7), True),  # Nov 1 2026 is a Sunday: week 1 = 1..7
        ("wk { 2 }", datetime(2026, 11, 8), True),
        ("week { 1 }", datetime(2026, 12, 5), True),  # Dec 1 is a Tuesday: 1..5 is week 1
        ("week { 2 }", datetime(2026, 12, 6), True),
        ("wd { sunday } md { 1-7 }", datetime(2026, 11, 1), True),
        ("min { 0-29 } sec { 0-4 }", datetime(2026, 1, 1, 5, 29, 4), True),
        ("min { 0-29 } sec { 0-4 }", datetime(2026, 1, 1, 5, 29, 5), False),
    ],
)
def test_time_period_forms(period, when, expected):
    assert parse_rule(period + " +1 day").matches(when) is expected


def test_dow_is_time_period_numbering():
    values = time_values(datetime(2026, 11, 1))  # a Sunday
    assert values["wd"] == 1
    assert time_values(datetime(2026, 11, 7))["wd"] == 7  # Saturday
    assert parse_rule("* * * * 7 +1 day").matches(datetime(2026, 11, 7))
    assert not parse_rule("* * * * 7 +1 day").matches(datetime(2026, 11, 8))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("* * * * 0 +1 year", "1=Sunday .. 7=Saturday"),
        ("* * * 13 * +1 year", "mo value 13 out of range 1-12"),
        ("* 24 * * * +1 day", "hr value 24 out of range"),
        ("*/5 * * * * +1 day", "steps and partial"),
        ("* * * * +1 day", "crontab form needs MIN HR DOM MON DOW"),
        ("* * * * 1 +1 dayz", "invalid expire spec '+1 dayz'"),
        ("wd { funday } +1 day", "unknown day 'funday'"),
        ("mo { jun-foo } +1 day", "unknown month 'foo'"),
        ("fortnight { 1 } +1 day", "unknown scale 'fortnight'"),
        ("wd { 1 +1 day", "unbalanced braces"),
        ("wd { } +1 day", "empty range"),
        ("wd { 1 } junk hr { 2 } +1 day", "cannot parse"),
        ("hr { 13noon } +1 day", "only 12noon"),
        ("yr { 1900 } +1 day", "year '1900'"),
        ("   ", "empty expire rule"),
    ],
)
def test_bad_rules_are_config_errors(text, message):
    with pytest.raises(ConfigError) as exc:
        parse_rule(text)
    assert message in str(exc.value)


PERL_PERIODS = [
    "wd { 1 }", "wd { su }", "md { 1-7 } wd { su }", "md { 1-7 } mo { 1 4 7 10 } wd { 1 }", "hr { 10-20 }",
    "wd { mon-fri } hr { 9am-4pm }", "wd {Mon Wed Fri} hr {9am-4pm}, wd{Tue Thu} hr {9am-2pm}",
    "mo { nov-feb }", "wk { 1 3 5 }", "wk { 2-4 } wd { sa }", "yd { 50-100 }", "hr { 10pm-2am }",
    "min { 0-29 }", "md { 25-3 }", "wd { fr-mo }", "yr { 2026 }", "hr { 12noon } , hr { 12am }",
    "month { dec } mday { 24-26 }", "wday { 7 } week { 5-6 }",
]


@pytest.mark.skipif(
    shutil.which("perl") is None
    or subprocess.run(["perl", "-MTime::Period", "-e1"], capture_output=True, check=False).returncode != 0,
    reason="Perl Time::Period (Debian libtime-period-perl, pulled in by dirvish) not installed",
)
def test_matches_perl_time_period(berlin_tz):
    """Our matcher agrees with the real Time::Period::inPeriod on random local times."""
    rng = random.Random(1234)
    start = datetime(2025, 1, 1)
    times = [start + timedelta(seconds=rng.randrange(0, 3 * 366 * 86400)) for dummy in range(300)]
    times += [datetime(2026, 3, 29, 1, 59), datetime(2026, 10, 25, 2, 30), datetime(2028, 2, 29, 23)]
    epochs = [int(time.mktime(t.timetuple())) for t in times]
    script = (
        "use Time::Period; my @p = split /\\n/, $ARGV[0]; "
        "while (my $t = <STDIN>) { chomp $t; print join('', map { inPeriod($t, $_) == 1 ? 1 : 0 } @p), \"\\n\" }"
    )
    out = subprocess.run(["perl", "-e", script, "\n".join(PERL_PERIODS)], input="\n".join(map(str, epochs)) + "\n",
                         capture_output=True, text=True, check=True).stdout.split()
    rules = [parse_rule(p + " +1 day") for p in PERL_PERIODS]
    mismatches = []
    for epoch, line in zip(epochs, out):
        local = datetime.fromtimestamp(epoch)
        for rule, bit in zip(rules, line):
            if rule.matches(local) != (bit == "1"):
                mismatches.append((local.isoformat(), rule.period, bit))
    assert len(out) == len(epochs)
    assert mismatches == []
