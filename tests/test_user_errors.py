"""What a user sees of an expected failure: one line (controller/errors.py), never a
traceback (non-negotiable 3)."""

from __future__ import annotations

import sqlite3

import psycopg.errors

from controller.errors import user_message


def test_the_database_going_away_under_a_hot_write_is_one_line() -> None:
    """The hot writes and looks run on the DBAPI connection itself (decision 0011): a
    PostgreSQL restart mid-lot reached the user as psycopg's AdminShutdown traceback."""
    gone = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert user_message(gone) == ("database: terminating connection due to administrator "
                                  "command")
    locked = sqlite3.OperationalError("database is locked")
    assert user_message(locked) == "database: database is locked"


def test_a_real_bug_is_not_dressed_as_a_users_error() -> None:
    assert user_message(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert user_message(KeyError("x")) is None
