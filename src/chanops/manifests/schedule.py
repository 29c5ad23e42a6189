"""What a manifest's `spec.sync` may ask of the daemon's scheduler, checked at load time.

Pure: no I/O, and no APScheduler (the daemon's scheduler is not loaded to validate).
The schema only checks shapes (five cron fields, durations such as `30m`); a schedule
the scheduler refuses would surface inside the daemon, long after `chanops validate`
passed, so the rules it applies are applied here, to the manifest, with the field at
fault:

- cron: the expression is handed to APScheduler 3's `CronTrigger` field by field
  (daemon/_scheduler.py), so these are its rules: minute 0-59, hour 0-23, day 1-31 or
  `last`, month 1-12 or jan-dec, day-of-week 0-6 or mon-sun (**0 is Monday**: its
  numbering, not crontab's, where 0 is Sunday); each field a comma-separated list of
  `*`, `*/n`, `a`, `a-b`, `a/n`, `a-b/n` or names (`jan-mar`, `mon-fri`). Everything
  accepted here is accepted there; a few things it takes but that mean something else
  than they say are refused here: a step after names (`mon-fri/2`, which it ignores),
  text after a name (`mon5`, read as `mon`), `lastly` (read as `last`), `0-0/n`,
  and digits other than 0-9. A numeric day-of-week that crontab would read as other
  days is a warning (an error with `--strict`).
- interval: at least MIN_SYNC_INTERVAL_SECONDS (1m) unless the operator lowers it
  (`LoadOptions.min_sync_interval`). A sync asks the marketplace for a full exchange;
  a manifest must not make the daemon start one every second. One minute is also the
  finest grain a cron expression can ask for.
- interval, jitter, timeout: at most MAX_SYNC_SECONDS (365d). Larger values overflow
  the scheduler's date arithmetic (`100000000d`, or 400 digits parsed to infinity).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chanops.manifests.durations import format_duration, parse_duration

__all__ = [
    "MAX_SYNC_SECONDS",
    "MIN_SYNC_INTERVAL_SECONDS",
    "ScheduleProblem",
    "cron_problems",
    "sync_problems",
]

MIN_SYNC_INTERVAL_SECONDS = 60.0
MAX_SYNC_SECONDS = 365 * 86400.0

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler: mon is 0


@dataclass(frozen=True, slots=True)
class ScheduleProblem:
    """One thing wrong with `spec.sync`: the key under it, and what is wrong."""

    key: str  # "interval", "cron", "jitter" or "timeout"
    message: str
    offset: int = 0  # cron: where in the expression the value at fault starts
    warning: bool = False  # valid, but probably not what was meant


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # as messages name it
    low: int
    high: int
    names: tuple[str, ...] = ()  # month or weekday names: the value of names[i] is low + i


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, MONTHS),
    _Field("day-of-week", 0, 6, WEEKDAYS),
)
_STAR = re.compile(r"\*(?:/([0-9]+))?")
_NUMBERS = re.compile(r"([0-9]+)(?:-([0-9]+))?(?:/([0-9]+))?")
_NAMES = re.compile(r"([a-z]+)(?:-([a-z]+))?(/.*)?", re.IGNORECASE)


def _step_problem(field: _Field, text: str, step: int, first: int, last: int) -> str | None:
    if step == 0:
        return f"{field.name} {text}: a step must be at least 1"
    if step > last - first:
        # CronTrigger refuses it too: the step would leave at most one value.
        return f"{field.name} {text}: step {step} is larger than the range {first}-{last}"
    return None


def _numbers_problem(field: _Field, text: str, match: re.Match[str]) -> str | None:
    first = int(match[1])
    last = int(match[2]) if match[2] is not None else None
    for value in (first, last):
        if value is not None and not field.low <= value <= field.high:
            hint = " (0 is Monday, 6 is Sunday)" if field.names == WEEKDAYS else ""
            return f"{field.name} {value} is out of range {field.low}-{field.high}{hint}"
    if last is not None and first > last:
        return f"{field.name} range {text} runs backwards: write the smaller value first"
    if match[3] is None:
        return None
    return _step_problem(field, text, int(match[3]), first, field.high if last is None else last)


def _names_problem(field: _Field, text: str, match: re.Match[str]) -> str | None:
    what = "month" if field.name == "month" else "weekday"
    for name in (match[1], match[2]):
        if name is not None and name.lower() not in field.names:
            choices = f"{field.names[0]}-{field.names[-1]}"
            return f"{field.name} {name!r} is not a {what} name ({choices})"
    first = field.names.index(match[1].lower())
    if match[2] is not None and first > field.names.index(match[2].lower()):
        return f"{field.name} range {text} runs backwards: write the earlier {what} first"
    if match[3] is not None:
        # CronTrigger would ignore the step silently (`mon-fri/2` runs every weekday).
        return f"{field.name} {text}: a step cannot follow names; list the {what}s instead"
    return None


def _value_problem(field: _Field, text: str) -> str | None:
    """What is wrong with one comma-separated value of a field (None: nothing)."""
    if not text:
        return f"{field.name} has an empty value (two commas, or one at an end)"
    if field.name == "day" and text.lower() == "last":
        return None  # the last day of the month
    star = _STAR.fullmatch(text)
    if star is not None:
        step = star[1]
        return (
            None if step is None else _step_problem(field, text, int(step), field.low, field.high)
        )
    numbers = _NUMBERS.fullmatch(text)
    if numbers is not None:
        return _numbers_problem(field, text, numbers)
    names = _NAMES.fullmatch(text)
    if names is not None and field.names:
        return _names_problem(field, text, names)
    forms = "*, */n, a, a-b, a-b/n" + (", names" if field.names else "")
    forms += ", last" if field.name == "day" else ""
    return f"{field.name} {text!r} is not a cron value (expected {forms}, or a list of them)"


def _values(text: str, start: int) -> Iterator[tuple[str, int]]:
    """(value, its offset in the expression) for each comma-separated value of a field."""
    for value in text.split(","):
        yield value, start
        start += len(value) + 1


def _weekday_set(text: str, *, crontab: bool) -> frozenset[int]:
    """The days (0 = Monday) a valid numeric day-of-week value selects.

    `crontab`: read it as crontab does (0 and 7 are Sunday) rather than as APScheduler.
    """
    star = _STAR.fullmatch(text)
    match = _NUMBERS.fullmatch(text)
    names = _NAMES.fullmatch(text)
    if star is not None:
        first, last, step = 0, 6, int(star[1] or 1)
    elif match is not None:
        first = int(match[1])
        last = int(match[2]) if match[2] else (first if match[3] is None else 6)
        step = int(match[3] or 1)
    elif names is not None:  # names mean the same to both
        first = WEEKDAYS.index(names[1].lower())
        last = WEEKDAYS.index(names[2].lower()) if names[2] else first
        return frozenset(range(first, last + 1))
    else:
        return frozenset()
    days = range(first, last + 1, step)
    return frozenset((d - 1) % 7 for d in days) if crontab else frozenset(days)


def _day_names(days: frozenset[int]) -> str:
    """{0, 1, 2, 3, 4} -> "mon-fri"; {0, 1, 6} -> "mon-tue,sun"."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs
    )


def _weekday_warning(text: str, start: int) -> ScheduleProblem | None:
    """A numeric day-of-week that crontab would read as other days (0 is Sunday there)."""
    if not any(c.isdigit() for c in text):
        return None
    values = text.split(",")
    ours = frozenset().union(*(_weekday_set(v, crontab=False) for v in values))
    theirs = frozenset().union(*(_weekday_set(v, crontab=True) for v in values))
    if ours == theirs:
        return None
    message = (
        f"day-of-week {text} means {_day_names(ours)}: the scheduler counts 0 as Monday, "
        f"not Sunday as crontab does; write day names (crontab's {text} is "
        f"{_day_names(theirs)})"
    )
    return ScheduleProblem("cron", message, start, warning=True)


@lru_cache(maxsize=256)  # manifests repeat a handful of schedules thousands of times
def cron_problems(expr: str) -> tuple[ScheduleProblem, ...]:
    """Every field of `expr` the scheduler would refuse (one problem per field at most)."""
    fields = [(m.group(), m.start()) for m in re.finditer(r"\S+", expr)]
    if len(fields) != len(_FIELDS):
        message = f"expected 5 fields (minute hour day month day-of-week), got {len(fields)}"
        return (ScheduleProblem("cron", message),)
    problems: list[ScheduleProblem] = []
    for field, (text, start) in zip(_FIELDS, fields, strict=True):
        for value, offset in _values(text, start):
            why = _value_problem(field, value)
            if why is not None:
                problems.append(ScheduleProblem("cron", why, offset))
                break
    if not problems:
        text, start = fields[-1]
        warning = _weekday_warning(text, start)
        if warning is not None:
            problems.append(warning)
    return tuple(problems)


def _duration_problem(key: str, text: Any, min_interval: float) -> ScheduleProblem | None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:  # the schema's pattern is the same; kept for safety
        return ScheduleProblem(key, str(exc))
    if seconds > MAX_SYNC_SECONDS:
        limit = format_duration(MAX_SYNC_SECONDS)
        return ScheduleProblem(key, f"{key} {text} is longer than the maximum of {limit}")
    if key == "interval" and seconds < min_interval:
        limit = format_duration(min_interval)
        return ScheduleProblem(
            key,
            f"interval {text} is shorter than the minimum of {limit}: a sync is a full "
            "exchange with the marketplace, not something to repeat every few seconds",
        )
    return None


def sync_problems(
    sync: Mapping[str, Any], *, min_interval: float = MIN_SYNC_INTERVAL_SECONDS
) -> list[ScheduleProblem]:
    """Every problem with a schema-valid `spec.sync` mapping, in key order.

    `min_interval`: the shortest interval allowed, in seconds (an operator's setting).
    """
    problems: list[ScheduleProblem] = []
    for key in ("interval", "cron", "jitter", "timeout"):
        if key not in sync:
            continue
        if key == "cron":
            problems.extend(cron_problems(str(sync[key])))
        else:
            problem = _duration_problem(key, sync[key], min_interval)
            if problem is not None:
                problems.append(problem)
    return problems
