"""Alembic environment: targets newsletter.db.Base.metadata."""

from __future__ import annotations

import os

from alembic import context

import newsletter.models  # noqa: F401  (registers every table on the metadata)
from newsletter.config import default_instance_path
from newsletter.db import Base
from newsletter.db import make_engine

target_metadata = Base.metadata


def _url() -> str:
    return os.environ.get("NEWSLETTER_DATABASE_URL") or (
        f"sqlite:///{default_instance_path() / 'newsletter.db'}"
    )


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
