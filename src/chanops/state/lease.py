"""The leader lease in PostgreSQL: one row, its holder, a growing epoch and an expiry.

Every statement here is one transaction and decides by the server's clock
(`clock_timestamp()`), so replicas never compare their own clocks:

- `acquire`: take the lease if it has expired (or was released); the epoch grows by one.
- `renew`: push the expiry out, only for the holder of that epoch while it is unexpired.
- `release`: expire it now (a clean shutdown hands over without waiting for the expiry).

The row is updated, so an acquisition waits for the fenced writes in flight (they hold
a share lock on it through `chanops_fence`), and after it commits the previous epoch's
writes fail. The leader's side (deadlines on its monotonic clock, stopping platform
writes) is `chanops.daemon.leader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEASE = "leader"

# Part of the PostgreSQL store's first migration (chanops.state.postgres).
LEASE_DDL = """
    CREATE TABLE leader_lease (
        name        TEXT PRIMARY KEY,
        holder      TEXT,
        epoch       BIGINT NOT NULL DEFAULT 0,
        acquired_at TIMESTAMPTZ,
        expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
    );
    INSERT INTO leader_lease (name) VALUES ('leader');
    CREATE FUNCTION chanops_fence(p_holder TEXT, p_epoch BIGINT) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM leader_lease
            WHERE name = 'leader' AND holder = p_holder AND epoch = p_epoch
              AND expires_at > clock_timestamp()
            FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'fenced: epoch % of % no longer holds the lease', p_epoch, p_holder
                USING ERRCODE = 'CH001';
        END IF;
    END
    $$;
"""


@dataclass(frozen=True, slots=True)
class Term:
    """One holder's hold of the lease: what every fenced write names."""

    holder: str
    epoch: int


@dataclass(frozen=True, slots=True)
class LeaseView:
    holder: str | None
    epoch: int
    remaining: float  # seconds until it expires (negative: expired)


_ACQUIRE = """
    UPDATE leader_lease
       SET holder = %(holder)s, epoch = epoch + 1, acquired_at = clock_timestamp(),
           expires_at = clock_timestamp() + make_interval(secs => %(seconds)s)
     WHERE name = 'leader' AND expires_at <= clock_timestamp()
    RETURNING epoch
"""

_RENEW = """
    UPDATE leader_lease
       SET expires_at = clock_timestamp() + make_interval(secs => %(seconds)s)
     WHERE name = 'leader' AND holder = %(holder)s AND epoch = %(epoch)s
       AND expires_at > clock_timestamp()
    RETURNING epoch
"""

_RELEASE = """
    UPDATE leader_lease SET expires_at = '-infinity'
     WHERE name = 'leader' AND holder = %(holder)s AND epoch = %(epoch)s
"""

_CURRENT = """
    SELECT holder, epoch,
           CASE WHEN expires_at = '-infinity' THEN -1.0
                ELSE extract(epoch FROM expires_at - clock_timestamp())::float8 END
      FROM leader_lease WHERE name = 'leader'
"""


# Both the sync and the async psycopg connections: the store's readers use the first,
# the daemon's election loop the second (`a*` functions).


def current(conn: Any) -> LeaseView | None:
    row = conn.execute(_CURRENT).fetchone()
    return None if row is None else LeaseView(row[0], int(row[1]), float(row[2]))


async def aacquire(conn: Any, holder: str, seconds: float) -> Term | None:
    """The new term if the lease was free; None when someone else holds it."""
    cur = await conn.execute(_ACQUIRE, {"holder": holder, "seconds": seconds})
    row = await cur.fetchone()
    return None if row is None else Term(holder, int(row[0]))


async def arenew(conn: Any, term: Term, seconds: float) -> bool:
    cur = await conn.execute(
        _RENEW, {"holder": term.holder, "epoch": term.epoch, "seconds": seconds}
    )
    return await cur.fetchone() is not None


async def arelease(conn: Any, term: Term) -> None:
    await conn.execute(_RELEASE, {"holder": term.holder, "epoch": term.epoch})


async def acurrent(conn: Any) -> LeaseView | None:
    cur = await conn.execute(_CURRENT)
    row = await cur.fetchone()
    return None if row is None else LeaseView(row[0], int(row[1]), float(row[2]))
