"""Durations as manifests and flags write them: `90s`, `30m`, `2h`, `1d`, `1h30m`.

Pure: no I/O. The JSON Schema spells DURATION_PATTERN once more (JSON cannot import
it); tests/manifests/test_load.py checks the two agree.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["DURATION_PATTERN", "format_duration", "parse_duration", "parse_flag_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One or more <number><unit> parts, e.g. "1h30m"; numbers may have a fraction ("1.5h").
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
DURATION_PATTERN = r"^(\d+(\.\d+)?[smhd])+$"
_WHOLE = re.compile(DURATION_PATTERN)


@lru_cache(maxsize=256)  # manifests repeat a handful of durations thousands of times
def parse_duration(text: str) -> float:
    """Seconds in `text` ("30m" -> 1800.0). Raises ValueError naming the bad text."""
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not _WHOLE.match(value):
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit s, m, h or d, e.g. 30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))


def parse_flag_duration(text: str) -> float:
    """Seconds in a command-line value: a bare number is seconds ("90"), else a duration.

    For flags such as `--resync` and `--git-interval`, where `300` has always meant five
    minutes. Raises ValueError like `parse_duration`.
    """
    value = text.strip()
    return float(value) if value.replace(".", "", 1).isdigit() else parse_duration(value)


def format_duration(seconds: float) -> str:
    """The shortest exact form of `seconds` ("1800.0" -> "30m"), for messages and export."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
