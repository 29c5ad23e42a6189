"""A notice as each provider wants it: Slack, Teams, a JSON webhook, an email. Pure.

Every form carries the same facts: what happened, the connection, the manifest file,
the git revision and what to do. The notice's fields were redacted before it was
built, so nothing here can leak a secret that the event did not already hide.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any

from chanops.notify._notices import Notice

__all__ = ["email_message", "plain_text", "slack_payload", "teams_payload", "webhook_payload"]

_ICON = {"error": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}
_TEAMS_COLOR = {"error": "Attention", "warning": "Warning", "info": "Good"}


def facts(notice: Notice) -> list[tuple[str, str]]:
    """(label, value) lines: connection, manifest, revision, event."""
    found = [
        ("Connection", notice.connection),
        ("Manifest", notice.file),
        ("Revision", notice.revision),
        ("Event", notice.type),
    ]
    return [(label, value) for label, value in found if value]


def plain_text(notice: Notice) -> str:
    lines = [f"[{notice.severity.upper()}] {notice.title}", "", notice.text, ""]
    lines += [f"{label}: {value}" for label, value in facts(notice)]
    lines += ["", f"What to do: {notice.action}"]
    return "\n".join(lines)


def slack_payload(notice: Notice) -> dict[str, Any]:
    """An incoming-webhook message: a text fallback and blocks."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in facts(notice)]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{_ICON[notice.severity]} *{notice.title}*\n{notice.text}",
            },
        },
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"What to do: {notice.action}"}],
        }
    )
    return {"text": f"{notice.title}: {notice.text}", "blocks": blocks}


def teams_payload(notice: Notice) -> dict[str, Any]:
    """A Teams workflow ("When a Teams webhook request is received") Adaptive Card."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": notice.title,
                "weight": "Bolder",
                "size": "Medium",
                "color": _TEAMS_COLOR[notice.severity],
                "wrap": True,
            },
            {"type": "TextBlock", "text": notice.text, "wrap": True},
            {
                "type": "FactSet",
                "facts": [{"title": label, "value": value} for label, value in facts(notice)],
            },
            {"type": "TextBlock", "text": f"What to do: {notice.action}", "wrap": True},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The generic webhook's JSON document (docs/notifications.md lists its fields)."""
    return {
        "type": notice.type,
        "severity": notice.severity,
        "recovery": notice.recovery,
        "title": notice.title,
        "text": notice.text,
        "action": notice.action,
        "connection": notice.connection,
        "file": notice.file,
        "revision": notice.revision,
        "labels": dict(notice.labels),
        "details": dict(notice.details),
        "at": notice.at,
    }


def webhook_body(notice: Notice) -> bytes:
    """The exact bytes signed and sent (compact, keys in a stable order)."""
    return json.dumps(webhook_payload(notice), separators=(",", ":"), default=str).encode()


def email_message(
    notice: Notice, *, sender: str, recipients: tuple[str, ...], prefix: str
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"{prefix} {notice.severity.upper()}: {notice.title}".strip()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(plain_text(notice) + "\n")
    return message
