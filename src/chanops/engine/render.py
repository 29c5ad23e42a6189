"""Plans as text (like `terraform plan`), JSON, or markdown for a pull-request comment.

Pure: turns a Plan into a string and decides nothing. Secrets are never in a Plan;
sensitive changes render as "(sensitive value)".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from chanops.condition import Condition
from chanops.engine import pointers
from chanops.engine.plan import Action, ActionKind, FieldChange, Plan
from chanops.sensitive import SENSITIVE_VALUE as SENSITIVE

SYMBOL: dict[ActionKind, str] = {
    ActionKind.CREATE: "+",
    ActionKind.ADOPT: "<=",
    ActionKind.UPDATE: "~",
    ActionKind.ENABLE: "~",
    ActionKind.DISABLE: "~",
    ActionKind.SYNC: ">",
    ActionKind.DELETE: "-",
    ActionKind.ORPHAN: "x",
    ActionKind.RECREATE: "-/+",
}
COLOUR: dict[str, str] = {
    "+": "green",
    "~": "yellow",
    "-": "red",
    "-/+": "red",
    "<=": "cyan",
    ">": "cyan",
    "x": "magenta",
    "!": "red",
}
VERB: dict[ActionKind, str] = {
    ActionKind.CREATE: "will be created",
    ActionKind.ADOPT: "will be adopted",
    ActionKind.UPDATE: "will be updated in-place",
    ActionKind.ENABLE: "will be enabled",
    ActionKind.DISABLE: "will be disabled",
    ActionKind.SYNC: "will be synced",
    ActionKind.DELETE: "will be deleted",
    ActionKind.ORPHAN: "will be forgotten (left untouched on the platform)",
    ActionKind.RECREATE: "must be replaced",
}
SUMMARY_ORDER = (
    ActionKind.CREATE,
    ActionKind.ADOPT,
    ActionKind.UPDATE,
    ActionKind.ENABLE,
    ActionKind.DISABLE,
    ActionKind.RECREATE,
    ActionKind.DELETE,
    ActionKind.ORPHAN,
    ActionKind.SYNC,
)
SUMMARY_WORD = {
    ActionKind.CREATE: "to create",
    ActionKind.ADOPT: "to adopt",
    ActionKind.UPDATE: "to update",
    ActionKind.ENABLE: "to enable",
    ActionKind.DISABLE: "to disable",
    ActionKind.RECREATE: "to replace",
    ActionKind.DELETE: "to delete",
    ActionKind.ORPHAN: "to forget",
    ActionKind.SYNC: "to sync",
}

Style = Callable[[str, str], str]


def _plain(text: str, colour: str) -> str:
    return text


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _field(path: str) -> str:
    """`/settings/orders/importStatuses` -> `settings.orders.importStatuses`."""
    return ".".join(pointers.split(path))


def _change_line(c: FieldChange, width: int, style: Style) -> str:
    name = _field(c.path).ljust(width)
    if c.op == "add":
        after = SENSITIVE if c.sensitive else _value(c.after)
        return style("      + ", "green") + f"{name} = {after}"
    if c.op == "remove":
        before = SENSITIVE if c.sensitive else _value(c.before)
        return style("      - ", "red") + f"{name} = {before} -> null"
    if c.sensitive:
        return style("      ~ ", "yellow") + f"{name} = {SENSITIVE}"
    return style("      ~ ", "yellow") + f"{name} = {_value(c.before)} -> {_value(c.after)}"


def summary(plan: Plan) -> str:
    counts = plan.counts()
    if not counts:
        line = "No changes. The platform matches the manifests."
    else:
        parts = [f"{counts.get(k.value, 0)} {SUMMARY_WORD[k]}" for k in SUMMARY_ORDER]
        parts = [p for p in parts if not p.startswith("0 ")] or ["0 to change"]
        line = "Plan: " + ", ".join(parts) + "."
    extra = []
    if plan.blocked:
        extra.append(f"{len(plan.blocked)} blocked")
    if plan.errors:
        extra.append(f"{len(plan.errors)} in error")
    if plan.unmanaged:
        extra.append(f"{len(plan.unmanaged)} unmanaged")
    return line + (f" ({', '.join(extra)})" if extra else "")


def _action_block(a: Action, style: Style) -> list[str]:
    symbol = SYMBOL[a.kind]
    ident = f"{a.name} (id {a.connection_id})" if a.connection_id is not None else a.name
    lines = [style(f"  # {ident} {VERB[a.kind]}", "bold") + f" ({a.reason})"]
    head = style(f"  {symbol} ", COLOUR[symbol]) + f'connection "{a.name}"'
    if a.kind in (ActionKind.CREATE, ActionKind.RECREATE, ActionKind.UPDATE) and a.changes:
        lines.append(head + " {")
        changes: Sequence[FieldChange] = a.changes
        if a.kind != ActionKind.UPDATE:
            changes = [FieldChange("/driver", "add", None, a.driver), *changes]
        width = max(len(_field(c.path)) for c in changes)
        lines.extend(_change_line(c, width, style) for c in changes)
        lines.append("    }")
    else:
        lines.append(head + f" {{ driver = {_value(a.driver)} }}")
    return lines


def render_text(plan: Plan, *, style: Style = _plain) -> str:
    """The plan as `chanops plan` prints it; `style(text, colour)` colours a piece.

    The command line passes click's styling when stdout is a terminal; everything else
    gets plain text. Rendering decides nothing: the plan already did.
    """
    out: list[str] = []
    for section in (_actions, _ignored, _blocked, _errors, _conditions, _unmanaged):
        lines = section(plan, style)
        if lines:
            out += [*lines, ""]
    out.append(style(summary(plan), "bold"))
    return "\n".join(out) + "\n"


def _actions(plan: Plan, style: Style) -> list[str]:
    if not plan.actions:
        return []
    out = ["chanops will perform the following actions:", ""]
    for a in plan.actions:
        out += [*_action_block(a, style), ""]
    return out[:-1]


def _ignored(plan: Plan, style: Style) -> list[str]:
    if not plan.ignored:
        return []
    out = ["Differences kept by spec.ignoreDifferences (not healed):"]
    for i in plan.ignored:
        hidden = i.before is None and i.after is None  # a sensitive difference
        before = SENSITIVE if hidden else _value(i.before)
        after = SENSITIVE if hidden else _value(i.after)
        out.append(f"  {i.name}: {_field(i.path)} = {before} (manifest: {after})")
    return out


def _blocked(plan: Plan, style: Style) -> list[str]:
    if not plan.blocked:
        return []
    out = [style("Blocked (a safety rule refused these):", "red")]
    for b in plan.blocked:
        ident = f"{b.name} (id {b.connection_id})" if b.connection_id is not None else b.name
        out.append(style("  ! ", "red") + f"{b.kind.value} {ident}: {b.reason}")
    return out


def _errors(plan: Plan, style: Style) -> list[str]:
    if not plan.errors:
        return []
    return [style("Errors:", "red")] + [
        style("  ! ", "red") + f"{e.name}: {e.message}" for e in plan.errors
    ]


def _conditions(plan: Plan, style: Style) -> list[str]:
    if not plan.conditions:
        return []
    return ["Conditions:"] + [
        f"  {name}: {_held(conds)}" for name, conds in plan.conditions.items()
    ]


def _held(conds: Sequence[Condition]) -> str:
    """`Type (message)` for each condition; a plan's conditions are the ones that hold."""
    return "; ".join(f"{c.type.value} ({c.message})" if c.message else c.type.value for c in conds)


def _unmanaged(plan: Plan, style: Style) -> list[str]:
    if not plan.unmanaged:
        return []
    return ["Unmanaged connections (listed, never touched):"] + [
        f"  {u.connection_id:>8}  {u.driver:<12} {u.status:<9} {_value(u.name)}"
        for u in plan.unmanaged
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plan: Plan) -> str:
    out = ["### chanops plan", "", f"**{summary(plan)}**", ""]
    if plan.actions:
        body: list[str] = []
        for a in plan.actions:
            body.extend(_action_block(a, _plain))
        # A `diff` block colours the +/- lines in GitHub and GitLab comments.
        out += ["```diff", *(_diff_line(line) for line in body), "```", ""]
    if plan.blocked:
        out += ["#### Blocked", "", "| connection | action | reason |", "|---|---|---|"]
        out += [f"| {b.name} | {b.kind.value} | {_md_escape(b.reason)} |" for b in plan.blocked]
        out.append("")
    if plan.errors:
        out += ["#### Errors", "", "| connection | error |", "|---|---|"]
        out += [f"| {e.name} | {_md_escape(e.message)} |" for e in plan.errors]
        out.append("")
    if plan.ignored:
        out += ["#### Ignored differences", ""]
        out += [f"- `{i.name}` `{_field(i.path)}`" for i in plan.ignored]
        out.append("")
    if plan.conditions:
        out += ["#### Conditions", ""]
        out += [f"- `{n}`: {_md_escape(_held(c))}" for n, c in plan.conditions.items()]
        out.append("")
    if plan.unmanaged:
        out += [
            "<details><summary>Unmanaged connections "
            f"({len(plan.unmanaged)}, never touched)</summary>",
            "",
            "| id | driver | status | name |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {u.connection_id} | {u.driver} | {u.status} | {_md_escape(u.name)} |"
            for u in plan.unmanaged
        ]
        out += ["", "</details>", ""]
    return "\n".join(out)


def _diff_line(line: str) -> str:
    """Move the change symbol to column 0, where a diff block looks for it."""
    stripped = line.lstrip()
    for symbol in ("-/+", "+", "-", "~", "<=", "x", ">"):
        if stripped.startswith(symbol + " "):
            lead = {"+": "+", "-": "-", "-/+": "!"}.get(symbol, "!")
            return lead + line[1:]
    return " " + line[1:] if line.startswith(" ") else line


def render(plan: Plan, fmt: str = "text", *, style: Style = _plain) -> str:
    if fmt == "json":
        return json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return render_markdown(plan)
    return render_text(plan, style=style)
