"""`spec.sync` is checked at load time against what the daemon's scheduler accepts."""

from __future__ import annotations

import itertools
from datetime import UTC
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

from chanops.daemon._scheduler import trigger_for
from chanops.manifests import LoadOptions, load_file, load_manifests
from chanops.manifests.schedule import (
    MAX_SYNC_SECONDS,
    MIN_SYNC_INTERVAL_SECONDS,
    cron_problems,
    sync_problems,
)

HEAD = """apiVersion: chanops/v1
kind: Connection
metadata: {{name: {name}}}
spec:
  driver: actindo-pos
  sync:
"""


def _write(tmp_path: Path, sync: str, name: str = "m") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD.format(name=name) + sync)
    return path


def _messages(expr: str) -> list[str]:
    return [p.message for p in cron_problems(expr)]


# -- what the scheduler accepts ------------------------------------------------------------

# Values for one field: valid, out of range, malformed, and the edge cases of each form.
VALUES = [
    *("*", "*/0", "*/1", "*/2", "*/6", "*/7", "*/11", "*/12", "*/23", "*/24", "*/30"),
    *("*/31", "*/59", "*/60", "0", "1", "6", "7", "12", "13", "23", "24", "31", "32"),
    *("59", "60", "99", "007", "0-5", "5-0", "1-5", "0-6", "1-7", "0-59", "0-60", "1-31"),
    *("1-12", "1-1/1", "5/2", "59/1", "6/1", "0-10/11", "0-10/10", "1-5/2", "3/0"),
    *("jan", "dec", "Jan", "JAN-MAR", "mar-jan", "mon", "sun", "mon-fri", "fri-mon", "MON"),
    *("foo", "monday", "last", "LAST", "", "L", "?", "1#2", "5W", "-1", "1-", "-", "*/"),
    *("**", "1,2", "1,,2", "5,", "jan,3", "mon,6", "*/15,7"),
]
# What APScheduler takes but we refuse, because it does not mean what it says.
STRICTER = {
    "0-0/1",  # (last or max) - first: a step over one value
    "mon-fri/2",  # the step is ignored
    "jan-dec/2",
    "mon5",  # read as mon
    "lastly",  # read as last
    "\u0663",  # ARABIC-INDIC DIGIT THREE, int() reads it as 3
}
FIELDS = ["minute", "hour", "day", "month", "day_of_week"]


def _scheduler_accepts(field: str, value: str) -> bool:
    try:
        CronTrigger(**{field: value}, timezone=UTC)
    except ValueError:
        return False
    return True


def _we_accept(index: int, value: str) -> bool:
    expr = ["0", "0", "*", "*", "*"]
    expr[index] = value
    return not [p for p in cron_problems(" ".join(expr)) if not p.warning]


@pytest.mark.parametrize(("index", "field"), list(enumerate(FIELDS)))
def test_cron_fields_accept_what_apscheduler_accepts(index: int, field: str) -> None:
    """Never more (the daemon would refuse it), and less only where documented."""
    for value in [*VALUES, *STRICTER]:
        if not value:
            continue  # an empty field cannot be written: fields are split on spaces
        ours, theirs = _we_accept(index, value), _scheduler_accepts(field, value)
        assert not (ours and not theirs), f"{field} {value!r}: we accept, APScheduler refuses"
        if value not in STRICTER:
            assert ours == theirs, f"{field} {value!r}: APScheduler accepts, we refuse"


def test_every_accepted_expression_makes_a_trigger() -> None:
    """The daemon builds the trigger field by field (scheduler.trigger_for): it works."""
    from chanops.manifests.model import SyncSpec

    for minute, hour, dow in itertools.product(
        ("*/20", "0,30", "59"), ("6-22", "*"), ("*", "mon-fri", "sun")
    ):
        expr = f"{minute} {hour} * * {dow}"
        assert cron_problems(expr) == ()
        assert trigger_for(SyncSpec(cron=expr)) is not None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("99 * * * *", "minute 99 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 7", "day-of-week 7 is out of range 0-6 (0 is Monday, 6 is Sunday)"),
        ("*/60 * * * *", "minute */60: step 60 is larger than the range 0-59"),
        ("*/0 * * * *", "minute */0: a step must be at least 1"),
        ("0 22-6 * * *", "hour range 22-6 runs backwards: write the smaller value first"),
        ("0 0 * dec-jan *", "month range dec-jan runs backwards: write the earlier month first"),
        ("0 0 * foo *", "month 'foo' is not a month name (jan-dec)"),
        ("0 0 * * monday", "day-of-week 'monday' is not a weekday name (mon-sun)"),
        (
            "0 0 * * mon-fri/2",
            "day-of-week mon-fri/2: a step cannot follow names; list the weekdays instead",
        ),
        ("1,,2 * * * *", "minute has an empty value (two commas, or one at an end)"),
        (
            "0 0 L * *",
            "day 'L' is not a cron value (expected *, */n, a, a-b, a-b/n, last, or a list of them)",
        ),
        (
            "x 0 * * *",
            "minute 'x' is not a cron value (expected *, */n, a, a-b, a-b/n, or a list of them)",
        ),
    ],
)
def test_cron_problems_name_the_field(expr: str, message: str) -> None:
    assert _messages(expr) == [message]


def test_every_bad_field_is_reported_once() -> None:
    assert _messages("60 24 0 13 7") == [
        "minute 60 is out of range 0-59",
        "hour 24 is out of range 0-23",
        "day 0 is out of range 1-31",
        "month 13 is out of range 1-12",
        "day-of-week 7 is out of range 0-6 (0 is Monday, 6 is Sunday)",
    ]
    assert _messages("1,99,98 * * * *") == ["minute 99 is out of range 0-59"]


def test_valid_cron_forms() -> None:
    for expr in (
        "*/20 6-22 * * *",
        "0 0 last * *",
        "0 0 1,15 jan-mar,OCT *",
        "0-30/10 */2 1-31/2 */3 mon-fri",
        "0 0 * * sat,sun",
    ):
        assert cron_problems(expr) == (), expr


def test_numeric_day_of_week_is_a_warning_when_crontab_reads_it_otherwise() -> None:
    (warning,) = cron_problems("0 6 * * 1-5")
    assert warning.warning
    assert warning.message == (
        "day-of-week 1-5 means tue-sat: the scheduler counts 0 as Monday, not Sunday as "
        "crontab does; write day names (crontab's 1-5 is mon-fri)"
    )
    assert "means mon,wed,fri,sun" in _messages("0 0 * * */2")[0]
    assert "(crontab's sun,1 is mon,sun)" in _messages("0 0 * * sun,1")[0]
    assert cron_problems("0 0 * * */1") == ()  # every day either way


# -- durations ---------------------------------------------------------------------------


def test_interval_floor_and_ceilings() -> None:
    assert MIN_SYNC_INTERVAL_SECONDS == 60 and MAX_SYNC_SECONDS == 365 * 86400
    assert sync_problems({"interval": "1m"}) == []
    assert sync_problems({"interval": "365d", "jitter": "365d", "timeout": "365d"}) == []
    (short,) = sync_problems({"interval": "59s"})
    assert short.key == "interval"
    assert short.message.startswith("interval 59s is shorter than the minimum of 1m")
    assert next(p.message for p in sync_problems({"interval": "0s"})).startswith("interval 0s")
    assert [(p.key, p.message) for p in sync_problems({"jitter": "366d", "timeout": "9000d"})] == [
        ("jitter", "jitter 366d is longer than the maximum of 365d"),
        ("timeout", "timeout 9000d is longer than the maximum of 365d"),
    ]
    huge = "9" * 400 + "d"  # a float: infinity, which the scheduler cannot add to a date
    (problem,) = sync_problems({"interval": huge})
    assert problem.message.endswith("is longer than the maximum of 365d")
    assert sync_problems({"interval": "1s"}, min_interval=1) == []


# -- as load reports them ----------------------------------------------------------------


def test_a_bad_cron_is_an_error_at_its_field(tmp_path: Path) -> None:
    path = _write(tmp_path, '    cron: "0 99 * * *"\n')
    outcome = load_file(path)
    assert outcome.failed and outcome.manifests == []
    assert [str(d) for d in outcome.diagnostics] == [
        f"{path}:7:14: error: spec.sync.cron: hour 99 is out of range 0-23"
    ]
    assert outcome.diagnostics[0].code == "schedule"


def test_column_points_into_plain_and_flow_strings(tmp_path: Path) -> None:
    plain = _write(tmp_path, "    cron: 0 0 * * 1-9\n", "plain")
    (d,) = load_file(plain).diagnostics
    assert (d.line, d.column) == (7, 19)
    flow = tmp_path / "flow.yaml"
    flow.write_text(HEAD.format(name="flow").replace("  sync:\n", "  sync: {cron: 99 * * * *}\n"))
    (d,) = load_file(flow).diagnostics
    assert (d.line, d.column, d.message) == (6, 16, "minute 99 is out of range 0-59")
    # Written over two lines, the value's columns are not the source's: its start.
    folded = _write(tmp_path, '    cron: "0 0 *\n      * 8"\n', "folded")
    (d,) = load_file(folded).diagnostics
    assert (d.line, d.column) == (7, 11)


def test_short_interval_refused_unless_the_operator_lowers_the_floor(tmp_path: Path) -> None:
    path = _write(tmp_path, "    interval: 10s\n")
    (d,) = load_file(path).diagnostics
    assert (d.severity, d.line, d.column, d.path) == ("error", 7, 15, "spec.sync.interval")
    lowered = load_file(path, LoadOptions(min_sync_interval=1))
    assert lowered.diagnostics == [] and lowered.manifests[0].sync is not None
    assert not load_manifests([path]).ok
    assert load_manifests([path], min_sync_interval=10).ok


def test_weekday_warning_loads_the_manifest_and_strict_refuses_it(tmp_path: Path) -> None:
    _write(tmp_path, "    cron: 0 6 * * 1-5\n")
    result = load_manifests([tmp_path])
    assert result.ok and [m.name for m in result.manifests] == ["m"]
    assert [d.severity for d in result.diagnostics] == ["warning"]
    strict = load_manifests([tmp_path], strict=True)
    assert not strict.ok and strict.manifests == ()
    assert strict.failed_files == {str(tmp_path / "m.yaml")}


def test_other_problems_of_the_document_are_reported_too(tmp_path: Path) -> None:
    """A bad schedule does not hide a literal secret in the same document."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "apiVersion: chanops/v1\nkind: Connection\nmetadata: {name: s}\nspec:\n"
        "  driver: shopware6\n  credentials:\n    url: https://shop.example.com\n"
        "    accessKeyId: SWIA1\n    secretAccessKey: literal-value\n"
        "  sync: {interval: 5s}\n"
    )
    codes = [d.code for d in load_file(path).diagnostics]
    assert sorted(codes) == ["literal-secret", "schedule"]
