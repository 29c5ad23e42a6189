"""chanops's memory: the SQLite state store (see `chanops.state.store`)."""

from chanops.state._history import HISTORY_SIZE
from chanops.state.store import SCHEMA_VERSION, Record, StateStore

__all__ = ["HISTORY_SIZE", "SCHEMA_VERSION", "Record", "StateStore"]
