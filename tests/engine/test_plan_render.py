"""Plans as data: JSON round-trip, and the three renderings (which decide nothing)."""

from __future__ import annotations

import json

from chanops.commands.common import terminal_style
from chanops.condition import ConditionType
from chanops.engine.conditions import holding
from chanops.engine.plan import (
    Action,
    ActionKind,
    Blocked,
    FieldChange,
    Ignored,
    Plan,
    PlanProblem,
    Unmanaged,
)
from chanops.engine.render import render, summary


def sample() -> Plan:
    return Plan(
        actions=(
            Action(
                ActionKind.CREATE,
                "new",
                "shopware6",
                "no connection with this name and driver exists",
                changes=(
                    FieldChange("/name", "add", None, "New"),
                    FieldChange("/credentials/secretAccessKey", "add", sensitive=True),
                ),
                display_name="New",
            ),
            Action(ActionKind.ADOPT, "shop", "shopify", "adopt", connection_id=3),
            Action(
                ActionKind.UPDATE,
                "shop",
                "shopify",
                "drift: changed on the platform since the last apply",
                connection_id=3,
                changes=(
                    FieldChange("/settings/orderImport/defaultTaxClass", "change", "a", "b"),
                    FieldChange("/settings/old", "remove", [1, 2], None),
                    FieldChange("/credentials/apiKey", "change", sensitive=True),
                ),
                if_match=7,
            ),
            Action(
                ActionKind.DELETE, "gone", "tradebyte", "manifest removed", 9, disable_first=True
            ),
            Action(ActionKind.ORPHAN, "kept", "tradebyte", "deletionPolicy Orphan", 10),
        ),
        blocked=(Blocked(ActionKind.RECREATE, "amz", "immutable marketplace", 4, "immutable"),),
        unmanaged=(Unmanaged(5, "POS | Berlin", "actindo-pos", "active"),),
        ignored=(Ignored("shop", "/settings/priceBooks", [1], [2]),),
        errors=(PlanProblem("twin", "2 unmanaged shopify connections are named 'Twin'"),),
        conditions={"sfy": (holding(ConditionType.AWAITING_MARKETPLACE_SETUP),)},
        managed=12,
        max_delete=3,
    )


def test_json_round_trip_is_exact() -> None:
    plan = sample()
    data = json.loads(json.dumps(plan.to_json()))
    assert Plan.from_json(data) == plan
    assert data["summary"] == {"create": 1, "adopt": 1, "update": 1, "delete": 1, "orphan": 1}
    assert Plan.from_json(Plan().to_json()) == Plan()


def test_text_render_is_terraform_like() -> None:
    text = render(sample(), "text")
    assert '  + connection "new" {' in text
    assert '      ~ settings.orderImport.defaultTaxClass = "a" -> "b"' in text
    assert "      - settings.old" in text and "[1, 2] -> null" in text
    assert "credentials.apiKey" in text and "= (sensitive value)" in text
    assert '  - connection "gone"' in text
    assert "! recreate amz (id 4): immutable marketplace" in text
    assert "sfy: AwaitingMarketplaceSetup" in text
    assert text.rstrip().endswith(
        "Plan: 1 to create, 1 to adopt, 1 to update, 1 to delete, 1 to forget. "
        "(1 blocked, 1 in error, 1 unmanaged)"
    )
    assert "\x1b[" not in text  # no colour unless asked
    coloured = render(sample(), "text", style=terminal_style(True))
    assert "\x1b[" in coloured
    assert render(sample(), "text", style=terminal_style(False)) == text


def test_markdown_render_for_a_pull_request() -> None:
    md = render(sample(), "markdown")
    assert md.startswith("### chanops plan")
    assert "```diff" in md
    assert "| 5 | actindo-pos | active | POS \\| Berlin |" in md  # pipes escaped
    assert "| twin |" in md


def test_empty_plan_summary() -> None:
    assert summary(Plan()) == "No changes. The platform matches the manifests."
    assert render(Plan(), "json").strip().startswith("{")
