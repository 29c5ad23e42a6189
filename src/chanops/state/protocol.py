"""What every state store backend offers: the interface the engine and the daemon use.

Two backends implement it: SQLite (`chanops.state.store.StateStore`, the embedded
default, one writer per file) and PostgreSQL (`chanops.state.postgres.PostgresStore`,
shared by replicas, one fenced leader writing). `chanops.state.open_store` picks one
from the `--state` value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from chanops.state.store import Record
    from chanops.state.tokens import StoredTokens


class Store(Protocol):
    """Records by manifest name, intents, the keyed HMAC of secrets, the event history."""

    @property
    def readonly(self) -> bool: ...

    @property
    def location(self) -> str:
        """Where the store is, for messages: a path, or a DSN without its password."""
        ...

    def hmac(self, value: str) -> str: ...

    def records(self) -> dict[str, Record]: ...

    def get(self, name: str) -> Record | None: ...

    def get_many(self, names: Iterable[str]) -> dict[str, Record | None]:
        """The named records, None where there is none (one round trip on PostgreSQL)."""
        ...

    def put(self, record: Record) -> Record: ...

    def update(self, name: str, change: Callable[[Record], Record]) -> Record | None: ...

    def clear_intent(self, name: str) -> Record | None: ...

    def forget(self, name: str) -> None: ...

    def tokens(self) -> StoredTokens | None:
        """The OAuth token set (chanops.state.tokens), or None."""
        ...

    def save_tokens(self, tokens: StoredTokens, *, login: bool = False) -> StoredTokens: ...

    def append_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append to the event history, trimmed to the last events (chanops.state._history)."""
        ...

    def events(self) -> list[dict[str, Any]]:
        """The event history, oldest first."""
        ...

    def close(self) -> None: ...
