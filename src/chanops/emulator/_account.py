"""The emulated account's own state: installed plugins, DataHub languages, shops' languages.

A real account has plugins installed (the Klarna, Ratepay and Shopware plugins decide
which Shopware 6 settings are offered) and a DataHub with a set of languages; a shop
uses languages of its own. Tests set all three through the emulator's testing routes
(a person installing a plugin, adding a language, or a shop adding one); until then
every plugin is installed, the DataHub has `DEFAULT_LANGUAGES`, and a shop whose
languages were never set is not checked.

Functions over the emulator's SQLite connection; the caller (`store.Platform`) holds
the transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chanops.emulator.rules import RuleViolation

SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shop_languages (
    url TEXT PRIMARY KEY,
    languages TEXT NOT NULL
);
"""

PLUGINS: tuple[str, ...] = ("klarna", "ratepay", "shopware")
DEFAULT_LANGUAGES: tuple[str, ...] = ("de-DE", "en-GB", "en-US", "fr-FR", "it-IT", "es-ES")


@dataclass(frozen=True, slots=True)
class Account:
    plugins: tuple[str, ...]
    languages: tuple[str, ...]

    def wire(self) -> dict[str, list[str]]:
        return {"plugins": list(self.plugins), "languages": list(self.languages)}


def create_tables(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _list(conn: sqlite3.Connection, key: str, default: Sequence[str]) -> tuple[str, ...]:
    row = conn.execute("SELECT value FROM account WHERE key = ?", (key,)).fetchone()
    return tuple(json.loads(row[0])) if row is not None else tuple(default)


def read(conn: sqlite3.Connection) -> Account:
    return Account(_list(conn, "plugins", PLUGINS), _list(conn, "languages", DEFAULT_LANGUAGES))


def write(
    conn: sqlite3.Connection,
    *,
    plugins: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
) -> Account:
    """Set the installed plugins and/or the DataHub languages (None: leave as is)."""
    for key, value in (("plugins", plugins), ("languages", languages)):
        if value is not None:
            conn.execute(
                "INSERT INTO account (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(sorted(set(value)))),
            )
    return read(conn)


def _shop_key(url: str) -> str:
    return url.rstrip("/")


def set_shop_languages(conn: sqlite3.Connection, url: str, languages: Sequence[str]) -> None:
    conn.execute(
        "INSERT INTO shop_languages (url, languages) VALUES (?, ?) "
        "ON CONFLICT (url) DO UPDATE SET languages = excluded.languages",
        (_shop_key(url), json.dumps(list(dict.fromkeys(languages)))),
    )


def missing_languages(conn: sqlite3.Connection, url: str) -> list[str]:
    """The languages the shop at `url` uses that the account's DataHub lacks."""
    row = conn.execute(
        "SELECT languages FROM shop_languages WHERE url = ?", (_shop_key(url),)
    ).fetchone()
    if row is None:
        return []
    have = set(read(conn).languages)
    return [lang for lang in json.loads(row[0]) if lang not in have]


def check(
    conn: sqlite3.Connection,
    driver: str,
    creds: Mapping[str, Any],
    cid: int | None,
    *,
    marketplace: bool,
) -> RuleViolation | None:
    """The rules that depend on the account: its DataHub languages, its stores' hashes.

    `cid` None is a create (languages are checked at creation only); otherwise the
    connection being updated, which its own store hash does not conflict with.
    """
    url = creds.get("url")
    if driver == "shopware6" and cid is None and isinstance(url, str):
        missing = missing_languages(conn, url)
        if missing:
            return RuleViolation(
                422,
                "language_missing",
                f"the shop {url} uses the language {', '.join(missing)}, which this "
                "account's DataHub does not have; add it to the DataHub first",
                "credentials.url",
            )
    store_hash = creds.get("storeHash")
    if driver == "bigcommerce" and isinstance(store_hash, str):
        return _store_hash_in_use(conn, store_hash, cid, marketplace=marketplace)
    return None


def _store_hash_in_use(
    conn: sqlite3.Connection, store_hash: str, cid: int | None, *, marketplace: bool
) -> RuleViolation | None:
    rows = conn.execute(
        "SELECT id, credentials FROM connections WHERE driver = 'bigcommerce' AND id != ?",
        (cid or 0,),
    )
    for row in rows:
        if json.loads(row["credentials"]).get("storeHash") != store_hash:
            continue
        why = (
            "the app makes one connection per store"
            if marketplace
            else "a second connection for one store needs a different store hash"
        )
        return RuleViolation(
            422,
            "store_hash_in_use",
            f"store {store_hash} already has a BigCommerce connection ({row['id']}); {why}",
            "credentials.storeHash",
        )
    return None
