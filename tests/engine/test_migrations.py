"""The migrations build exactly the schema ``hub/store/tables.py`` declares, on both stores:
a table or index added to one and forgotten in the other fails here, not in production."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.config import HubSettings
from hub.store.db import make_engine, migrate
from hub.store.tables import metadata


def test_migrations_match_the_declared_tables(database_url: str, tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path, database_url=database_url)
    engine = make_engine(settings.sqlalchemy_url())
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
