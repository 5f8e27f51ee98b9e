"""Alembic, driven from the application: upgrade and inspect the schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from newsletter.config import data_dir


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Return an Alembic config for our migrations folder, bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(data_dir("migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Migrate the database up to a revision (the newest by default)."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def current(engine: sa.Engine) -> str | None:
    """Return the database's current revision, or None when it is empty."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
