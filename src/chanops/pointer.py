"""JSON Pointer (RFC 6901) escaping: the one spelling of `~0` and `~1` in chanops.

Low-level and pure, so both `chanops.manifests` (which must not import the engine)
and `chanops.engine` use it.
"""

from __future__ import annotations

__all__ = ["escape", "parts", "unescape"]


def escape(key: str) -> str:
    """One key as a pointer segment: `a/b` -> `a~1b`, `a~b` -> `a~0b`."""
    # `~` first: escaping `/` first would turn its `~1` into `~01`.
    return key.replace("~", "~0").replace("/", "~1")


def unescape(segment: str) -> str:
    """One pointer segment back to its key: `a~1b` -> `a/b`, `a~01` -> `a~1`."""
    # `~1` first: `~01` is an escaped `~` followed by `1`, not an escaped `/`.
    return segment.replace("~1", "/").replace("~0", "~")


def parts(pointer: str) -> list[str]:
    """The keys of `pointer`: `/credentials/a~1b` -> ["credentials", "a/b"]; "" -> []."""
    return [unescape(segment) for segment in pointer.split("/")[1:]]
