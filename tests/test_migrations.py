"""Migrations: `upgrade head` builds exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from newsletter import migrations
from newsletter.db import Base


def test_migrations_match_models(app):
    engine = app.extensions["newsletter.db"].engine
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert migrations.current(engine) is not None


def test_db_upgrade_command_is_idempotent(runner):
    first = runner("db", "upgrade")
    second = runner("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "Database is at revision" in second.output
