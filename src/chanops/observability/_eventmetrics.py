"""Metrics counted from the event sink: actions, guards, platform and auth health.

The alert rules and the dashboard of deploy/monitoring/ read these (docs/operations.md):
`chanops_actions_total{kind,outcome}` (success, failed, blocked),
`chanops_guard_blocked_total{rule}`, `chanops_platform_up` and
`chanops_auth_reauthorization_required`. Fed by events, so every producer (executor,
planner, daemon, OAuth session) is counted without knowing about metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from chanops.events import Event

__all__ = ["EventMetrics"]

# connection.<past tense> -> the action it finished (a recreate ends with `created`)
_WRITTEN = frozenset(
    {"created", "adopted", "updated", "enabled", "disabled", "deleted", "orphaned", "synced"}
)
# event -> (gauge attribute, value)
_FLAGS = {
    "platform.unreachable": ("platform_up", 0.0),
    "platform.reachable": ("platform_up", 1.0),
    "auth.reauthorization_required": ("reauthorization_required", 1.0),
    "auth.restored": ("reauthorization_required", 0.0),
}


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "chanops_actions",
            "Connection actions by kind (create, update, delete, ...) and outcome (success, "
            "failed, blocked: held back by a safety guard).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.guard_blocked = Counter(
            "chanops_guard_blocked",
            "Actions held back by a safety guard, by rule (counted at every reconcile that "
            "plans them: while a guard holds, this keeps increasing).",
            ["rule"],
            registry=registry,
        )
        self.platform_up = Gauge(
            "chanops_platform_up",
            "0 while the platform is unreachable (from the first failed reconcile of an "
            "outage to the first successful listing), else 1.",
            registry=registry,
        )
        self.reauthorization_required = Gauge(
            "chanops_auth_reauthorization_required",
            "1 while the platform refuses chanops's authorisation until `chanops login`.",
            registry=registry,
        )
        self.platform_up.set(1)
        for outcome in ("success", "failed"):
            for kind in ("create", "update", "delete"):
                self.actions.labels(kind=kind, outcome=outcome)

    def on_event(self, event: Event) -> None:
        name = event.name
        flag = _FLAGS.get(name)
        if flag is not None:
            gauge: Gauge = getattr(self, flag[0])
            gauge.set(flag[1])
            return
        if name == "guard.blocked":
            self.guard_blocked.labels(rule=str(event.fields.get("rule") or "unknown")).inc()
            self._action(event, "blocked")
        elif name == "connection.failed":
            self._action(event, "failed")
        elif name.startswith("connection.") and name[len("connection.") :] in _WRITTEN:
            self._action(event, "success")

    def _action(self, event: Event, outcome: str) -> None:
        kind = str(event.fields.get("action") or "unknown")
        self.actions.labels(kind=kind, outcome=outcome).inc()
