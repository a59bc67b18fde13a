"""Errors the command line reports as one line, and how each is worded."""

from __future__ import annotations

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input or a refused request: shown to the user as one line."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def user_message(exc: BaseException) -> str | None:
    """One line for an expected failure from any layer; None for a real bug."""
    # Imported here so the CLI starts even if a layer is missing or broken.
    from drivers.errors import ToolError
    from drivers.line_config import LineConfigError

    if isinstance(exc, ToolError | LineConfigError):
        return str(exc)
    try:
        from sim.faults import FaultSpecError
    except ImportError:  # pragma: no cover
        pass
    else:
        if isinstance(exc, FaultSpecError):
            return str(exc)
    for module, names in _LAYER_ERRORS:
        try:
            mod = __import__(module, fromlist=names)
        except ImportError:
            continue
        types = tuple(getattr(mod, n) for n in names if hasattr(mod, n))
        if types and isinstance(exc, types):
            return str(exc)
    from sqlalchemy.exc import OperationalError

    from controller.persistence.base import reason

    if isinstance(exc, (OperationalError, *_dbapi_operational_errors())):
        # The database went away or stayed locked past its busy timeout in the middle of a
        # command (opening it is checked by the store itself): the driver's own words. The
        # hot writes and looks run on the DBAPI connection itself (decision 0011): its
        # errors come unwrapped (a PostgreSQL restart: psycopg's AdminShutdown).
        return f"database: {reason(exc)}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return None


def _dbapi_operational_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    found: list[type[BaseException]] = [sqlite3.OperationalError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - PostgreSQL support not installed
        return tuple(found)
    return (*found, psycopg.OperationalError)


# Other layers' error base classes that carry a user-ready message.
_LAYER_ERRORS: list[tuple[str, list[str]]] = [
    ("sequences.errors", ["RecipeError", "SequenceError", "InterlockError"]),
    ("controller.domain", ["RuleError"]),  # StoreError is one
]
