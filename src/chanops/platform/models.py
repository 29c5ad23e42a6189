"""What the platform says: connections, jobs and drivers as typed, frozen values.

Pure data; the client builds these from the wire format and nothing else knows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ConnectionStatus = Literal["active", "inactive", "deleting"]
JobKind = Literal["initial_sync", "sync", "delete"]
JobState = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class Driver:
    name: str  # e.g. "shopware6"
    title: str  # e.g. "Shopware 6"
    creatable: bool  # False for shopify and actindo-pos


@dataclass(frozen=True, slots=True)
class Connection:
    id: int
    name: str
    driver: str
    status: ConnectionStatus
    version: int
    has_order_errors: bool = False
    created_at: str = ""
    updated_at: str = ""
    credentials: Mapping[str, Any] = field(default_factory=dict)  # secret fields are None
    settings: Mapping[str, Any] = field(default_factory=dict)
    automation: Mapping[str, str] = field(default_factory=dict)
    # Amazon: "pending" until the OAuth flow has set the access token, then "authorized";
    # None for drivers without an OAuth step.
    authorization: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: JobKind
    connection_id: int
    state: JobState
    progress: int = 0
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class CreateResult:
    connection: Connection
    initial_job: Job | None  # the initial_sync job the platform started
