"""chanops's memory: the SQLite state store (see `chanops.state.store`)."""

from chanops.state.store import SCHEMA_VERSION, Record, StateStore

__all__ = ["SCHEMA_VERSION", "Record", "StateStore"]
