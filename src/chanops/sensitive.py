"""The text shown wherever a secret value would otherwise appear.

One constant for the plan renderer, the executor's events and the log redactor, so
every output hides a secret the same way (and a test or a reader can look for one
marker). Low-level, no imports: importing it costs nothing.
"""

from __future__ import annotations

__all__ = ["SENSITIVE_VALUE"]

SENSITIVE_VALUE = "(sensitive value)"
