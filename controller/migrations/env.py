"""Alembic environment for the controller's database.

Run by ``controller.db.upgrade_to_head`` with an open connection in
``config.attributes["connection"]``; there is no alembic.ini. To write a new
revision after changing ``controller/models.py``::

    .venv/bin/python -m controller.migrations.revise "what changed"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from alembic import context
from sqlalchemy import create_engine

from controller.models import Base, UtcDateTime

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

target_metadata = Base.metadata


def _render_item(
    type_: str, obj: object, autogen_context: AutogenContext
) -> str | Literal[False]:
    # Revisions stay self-contained: our UTC wrapper is a plain DateTime in the schema.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move tables
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the migrations")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
