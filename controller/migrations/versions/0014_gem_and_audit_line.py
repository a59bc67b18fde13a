"""GEM settings and spool per line; the audit log names the acting line.

Each line's equipment (``serve --gem`` with ``[line] id``) has its own host link, so
its control state, report definitions, enables, constants and spool are its own: with
one shared row a host switching line A offline, or defining its reports, did it for
every line of the database, and a line's spooled events went to whichever line's host
connected first.

A setting from before was read by every line of the database: it is copied to every
line that recorded anything (a lot, an alarm, a tool state), as each such line used it,
and kept under "" (a store that names no line). A spooled message goes to the only such
line when there is one, else stays under "" (docs/gem.md says which: before this only
one line of a shared database was to have a host link). ``audit_log.line_id`` is left
empty for entries from before. The downgrade keeps, per key, the newest setting and
every spooled message.

Revision ID: 0014_gem_and_audit_line
Revises: 0013_tool_event_seqs_line
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_gem_and_audit_line"
down_revision: str | None = "0013_tool_event_seqs_line"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def _setting_columns() -> list[sa.Column]:
    return [
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
    ]


def _settings() -> list[dict]:
    # Typed, so SQLite's stored times and JSON read back as values to write again.
    old = sa.table("gem_settings", *[sa.column(c.name, c.type) for c in _setting_columns()])
    return [dict(r._mapping) for r in op.get_bind().execute(sa.select(old))]


def _known_lines() -> list[str]:
    """Every line the database has a record of."""
    lines: set[str] = set()
    for table in ("lots", "alarms", "tool_states"):
        t = sa.table(table, sa.column("line_id"))
        lines.update(line for (line,) in op.get_bind().execute(
            sa.select(t.c.line_id).where(t.c.line_id.is_not(None)).distinct()) if line)
    return sorted(lines)


def upgrade() -> None:
    settings, lines = _settings(), _known_lines()
    op.drop_table("gem_settings")
    table = op.create_table(
        "gem_settings",
        sa.Column("line_id", sa.String(200), nullable=False),
        *_setting_columns(),
        sa.PrimaryKeyConstraint("line_id", "key", name=op.f("pk_gem_settings")),
    )
    copies = [{**row, "line_id": line} for row in settings for line in ["", *lines]]
    if copies:
        op.bulk_insert(table, copies)
    op.add_column("gem_spool", sa.Column("line_id", sa.String(200), nullable=False,
                                         server_default=""))
    if len(lines) == 1:
        spool = sa.table("gem_spool", sa.column("line_id"))
        op.get_bind().execute(spool.update().values(line_id=lines[0]))
    op.create_index(op.f("ix_gem_spool_line_id"), "gem_spool", ["line_id"])
    op.add_column("audit_log", sa.Column("line_id", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "line_id")
    op.drop_index(op.f("ix_gem_spool_line_id"), "gem_spool")
    op.drop_column("gem_spool", "line_id")
    newest: dict[str, dict] = {}
    for row in sorted(_settings(), key=lambda r: r["updated_at"]):
        newest[row["key"]] = row
    op.drop_table("gem_settings")
    table = op.create_table(
        "gem_settings", *_setting_columns(),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_gem_settings")),
    )
    if newest:
        op.bulk_insert(table, list(newest.values()))
