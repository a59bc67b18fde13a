"""The databases the store's tests run on: a SQLite file, and a throwaway PostgreSQL.

``db_url`` is parametrised: every test that takes it runs once on a SQLite file
and once on a fresh database of a PostgreSQL cluster this session starts for
itself (``initdb`` into a temporary folder, ``pg_ctl start`` on 127.0.0.1 with
``fsync=off``). As root the cluster runs as the ``postgres`` user (PostgreSQL
refuses root, and so do the pytest plugins that start clusters: hence our own).
Without PostgreSQL's server binaries or the psycopg driver (or with
``BUMPLINE_TEST_NO_POSTGRES=1``), the PostgreSQL runs are left out at
collection and the summary says so in one line (``conftest.py`` calls the
hooks below).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_LEFT_OUT = pytest.StashKey[tuple[int, str]]()
PG_SKIP = "no PostgreSQL here (server binaries or psycopg missing)"
PG_OFF = "BUMPLINE_TEST_NO_POSTGRES is set"
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PgCluster:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    @contextlib.contextmanager
    def admin(self) -> Iterator[object]:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            yield conn

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database of this cluster (its URL), dropped afterwards."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
        try:
            yield self.url(name)
        finally:
            with self.admin() as conn:
                conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[attr-defined]


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _why_no_postgres() -> str | None:
    if os.environ.get("BUMPLINE_TEST_NO_POSTGRES"):
        return PG_OFF
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return PG_SKIP
    if _pg_bindir() is None:
        return PG_SKIP
    return None


def _on_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_param = callspec is not None and callspec.params.get("db_url") == "postgresql"
    return on_param or "pg_url" in getattr(item, "fixturenames", ())


def leave_out_postgres(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL, drop its runs from the session (counted for the summary)."""
    why = _why_no_postgres()
    if why is None:
        return
    dropped = [item for item in items if _on_postgres(item)]
    if dropped:
        items[:] = [item for item in items if not _on_postgres(item)]
        config.hook.pytest_deselected(items=dropped)
        config.stash[_LEFT_OUT] = (len(dropped), why)


def summary_line(config: pytest.Config) -> str | None:
    """The one line saying what was left out, if anything."""
    left_out = config.stash.get(_LEFT_OUT, None)
    if left_out is None:
        # Under pytest-xdist the workers collect and count; the controller only knows why.
        why = _why_no_postgres() if config.pluginmanager.hasplugin("dsession") else None
        return f"PostgreSQL: its test runs not run: {why}" if why else None
    count, why = left_out
    return f"PostgreSQL: {count} test runs not run: {why}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster for this test session, removed at its end."""
    why = _why_no_postgres()
    if why is not None:
        pytest.skip(why)
    bindir = _pg_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="bumpline-pg-"))
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        shutil.chown(root, user="postgres", group="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, sockets, log = root / "data", root / "sockets", root / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=START_TIMEOUT_S,
            cwd=root, check=False,
        )
        if done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()}\n{server_log}")

    port = _free_port()
    user = "postgres"
    sockets.mkdir()
    if as_root:
        shutil.chown(sockets, user="postgres", group="postgres")
    run(str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync",
        "-E", "UTF8", "--locale=C")
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
        "-t", str(START_TIMEOUT_S), "start")
    try:
        yield PgCluster("127.0.0.1", port, user)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database of the session's cluster, dropped after the test."""
    with pg_cluster.database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'line.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's own database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'line.db'}"
    return request.getfixturevalue("pg_url")
