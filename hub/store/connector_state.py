"""Admin switches that outlive restarts: a connector enabled or disabled by name."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from hub.store import tables as t

cs = t.connector_state


def overrides(conn: Connection) -> dict[str, bool]:
    """Every switch the admin set: connector name -> enabled."""
    return {name: bool(enabled) for name, enabled in conn.execute(select(cs.c.name, cs.c.enabled))}


def set_enabled(conn: Connection, name: str, enabled: bool, now: float) -> None:
    """Record the switch (an update, or an insert the first time)."""
    done = conn.execute(
        update(cs).where(cs.c.name == name).values(enabled=enabled, updated_at=now)
    ).rowcount
    if not done:
        conn.execute(cs.insert().values(name=name, enabled=enabled, updated_at=now))
