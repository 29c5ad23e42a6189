"""Notifications: the events that need a person, sent to chat, a webhook or email.

`config` parses the `notifications:` section of chanops.yaml (pure; positions kept for
file:line:col errors), `_notices` turns the event sink's events into messages (one per
failure streak, one on recovery), `_messages` renders them per provider kind,
`_transport` delivers them, and `dispatch` runs a bounded queue and a thread per
provider so that a slow or failing receiver never delays a reconcile
(docs/notifications.md).
"""

# The public modules; the others are this package's internals.
__all__ = ["config", "dispatch"]
