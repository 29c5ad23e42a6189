"""The per-driver reference of docs/manifests.md, generated from the driver schemas.

Every driver's fields, their UI labels, whether a working connection needs them, and
the rules the schema keywords state (`x-chanops-*`), plus the driver's own rules
(`x-chanops-rules`). The section sits between two marker lines in docs/manifests.md;
`render_section` is pure, and the module's command line rewrites or checks the file:

    python -m chanops.manifests.driverdocs docs/manifests.md          # rewrite
    python -m chanops.manifests.driverdocs --check docs/manifests.md  # exit 1 if stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from chanops.manifests import schemas
from chanops.manifests.drivers import DRIVER_NAMES, driver_info, field_docs

__all__ = ["BEGIN", "END", "main", "render_section", "with_section"]

BEGIN = "<!-- BEGIN drivers: generated from the driver schemas by chanops.manifests.driverdocs -->"
END = "<!-- END drivers -->"
_FIX = "regenerate it: python -m chanops.manifests.driverdocs docs/manifests.md"


def _cell(text: str) -> str:
    """Text safe in a table cell: no column break, no HTML tag ("<class>" is a placeholder)."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def _driver(name: str) -> list[str]:
    info = driver_info(name)
    how = (
        "created through the API"
        if info.creatable
        else "not created through the API: adopt one with `spec.connectionId`"
    )
    out = [f"### `{name}`: {info.title}", "", f"{info.title} connections are {how}.", ""]
    notes = schemas.driver_body(name).get("x-chanops-rules") or []
    out += [f"- {_cell(note)}" for note in notes]
    if notes:
        out.append("")
    fields = field_docs(name)
    if not fields:
        return [*out, "No credentials, no settings: chanops manages the name and `enabled`.", ""]
    out += ["| field | UI label | needed | rules |", "|---|---|---|---|"]
    for f in fields:
        rules = "; ".join(f.rules)
        out.append(f"| `{f.section}.{f.key}` | {_cell(f.label)} | {f.required} | {_cell(rules)} |")
    return [*out, ""]


def render_section() -> str:
    """The generated section, markers included."""
    lines = [BEGIN, ""]
    for name in DRIVER_NAMES:
        lines += _driver(name)
    lines.append(END)
    return "\n".join(lines)


def with_section(text: str) -> str:
    """`text` (docs/manifests.md) with its generated section replaced by a fresh one."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    return text[:start] + render_section() + text[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chanops.manifests.driverdocs",
        description="Regenerate the driver reference of docs/manifests.md from the schemas.",
    )
    parser.add_argument("path", type=Path, help="the Markdown file (docs/manifests.md)")
    parser.add_argument(
        "--check", action="store_true", help="only check: exit 1 if the file is out of step"
    )
    args = parser.parse_args(argv)
    path: Path = args.path
    try:
        text = path.read_text(encoding="utf-8")
        fresh = with_section(text)
        if args.check:
            if fresh != text:
                print(f"{path}: the driver reference is out of step with the schemas; {_FIX}")
                return 1
            return 0
        path.write_text(fresh, encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"{path}: {why}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
