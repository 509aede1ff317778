"""Alembic environment for the seqrun store. ``Store.open`` runs it programmatically, passing
its connection in ``config.attributes["connection"]``; the ``alembic`` CLI works too with
``sqlalchemy.url`` set (or ``SEQRUN_DATABASE_URL``)."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from engine.store.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("SEQRUN_DATABASE_URL")
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ["SEQRUN_DATABASE_URL"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
