"""Store write latency on PostgreSQL vs SQLite at like durability (target: PostgreSQL <= 1.5x),
and lots claimed per second with three controllers claiming at once.

A step's journal writes are committed transactions, one per wafer transition
(persist before acting), so their latency is what a line pays per step. The two
back ends are compared at the same durability, or the comparison is not fair:

* **crash-safe**: a commit survives the controller's crash, not a power cut of
  the database host. SQLite as the store runs it (WAL, ``synchronous=NORMAL``:
  no fsync at commit) against PostgreSQL with ``synchronous_commit=off``.
* **on disk**: a commit is on disk before it returns. SQLite with
  ``synchronous=FULL`` against PostgreSQL with ``synchronous_commit=on`` (the
  server's default, which the store leaves alone: docs/database.md).

The cluster's own ``fsync`` setting is printed: with ``fsync=off`` (a test
cluster) the on-disk pair measures nothing real and is said so. The claim
figure is the throughput of ``Store.claim_lot`` with three controllers (each its
own engine, in threads) racing for the same queue.

    .venv/bin/python benchmarks/bench_db.py [--pg postgresql+psycopg://user@host/db] [--busy]

Without ``--pg`` (or ``$BUMPLINE_BENCH_PG``) only SQLite is measured, and it says
so in one line. The PostgreSQL database given must be a throwaway one. ``--busy``
keeps one core spinning in another process while it measures (a loaded line PC).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import make_url, text

from controller.store import Store

WRITES = 300  # journal writes timed per back end
CLAIM_LOTS = 60
CLAIMERS = 3
ROUNDS = 5
TARGET_RATIO = 1.5


def _lot(store: Store, lot_id: str, slots: int = 1) -> None:
    store.create_lot(lot_id, recipe_name="bench", recipe_version=1, recipe_hash="0" * 64,
                     slots=list(range(1, slots + 1)), user="bench")


def write_latency_ms(url: str, tag: str, *, sqlite_sync: str | None = None) -> list[float]:
    """Milliseconds per committed journal write (a wafer transition).

    ``sqlite_sync``: another ``PRAGMA synchronous`` than the store's NORMAL, set on the
    store's writer connection (the one every journal write uses)."""
    with Store(url) as store:
        if sqlite_sync is not None:
            writer = store._db._writer_conn()  # noqa: SLF001 - the bench's own knob
            writer.connection.dbapi_connection.execute(f"PRAGMA synchronous={sqlite_sync}")
        _lot(store, f"W{tag}", 25)
        store.set_lot_state(f"W{tag}", "running")  # not in the claim rounds' queue
        wafer = f"W{tag}-01"
        store.record_transition(wafer, "warm", "up", "warm_up")  # first-use costs
        times = []
        for i in range(WRITES):
            t0 = time.perf_counter()
            store.record_transition(wafer, f"step{i}_running", f"step{i + 1}_waiting",
                                    "judged_ok", "in window", step_index=i,
                                    step_kind="print", tool="printer-1")
            times.append((time.perf_counter() - t0) * 1000)
        return times


def with_synchronous_commit(url: str, value: str) -> str:
    """The PostgreSQL URL with ``synchronous_commit`` set for its sessions."""
    joiner = "&" if make_url(url).query else "?"
    return f"{url}{joiner}options={quote(f'-c synchronous_commit={value}')}"


def pg_settings(url: str) -> str:
    with Store(url) as store, store.engine.connect() as conn:
        return ", ".join(f"{name}={conn.execute(text(f'SHOW {name}')).scalar()}"
                         for name in ("fsync", "synchronous_commit", "wal_sync_method"))


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """One core kept busy by another process while the block runs."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def claims_per_s(url: str, tag: str) -> float:
    """Lots claimed per second by CLAIMERS controllers racing for CLAIM_LOTS lots."""
    with Store(url) as store:
        for n in range(CLAIM_LOTS):
            _lot(store, f"C{tag}{n:03d}")
    stores = [Store(url) for _ in range(CLAIMERS)]
    start = threading.Barrier(CLAIMERS + 1)
    claimed: list[str] = []

    def claimer(line: str, mine: Store) -> None:
        start.wait()
        while (lot := mine.claim_lot(line, lambda _lot: True)) is not None:
            claimed.append(lot.id)
            mine.set_lot_state(lot.id, "running")  # claimed lots leave the queue

    threads = [threading.Thread(target=claimer, args=(f"bench-{n}-{tag}", s))
               for n, s in enumerate(stores)]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        t0 = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - t0
    finally:
        for s in stores:
            s.close()
    assert len(claimed) == len(set(claimed)) == CLAIM_LOTS, (
        f"a lot claimed twice or lost: {len(claimed)} claims of {len(set(claimed))} lots, "
        f"{CLAIM_LOTS} queued")
    return CLAIM_LOTS / elapsed


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("BUMPLINE_BENCH_PG"),
                        help="a throwaway PostgreSQL database URL")
    parser.add_argument("--busy", action="store_true",
                        help="keep one core busy in another process while measuring")
    args = parser.parse_args()
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp, busy_core(args.busy):
        if args.busy:
            print("one core kept busy by another process")
        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        tag = str(os.getpid() % 1000)
        if args.pg:
            print(f"PostgreSQL: {pg_settings(args.pg)}")
        else:
            print("PostgreSQL: not measured (give --pg URL or $BUMPLINE_BENCH_PG)")
        off, on = ((with_synchronous_commit(args.pg, "off"), with_synchronous_commit(args.pg, "on"))
                   if args.pg else (None, None))
        pairs = [("crash-safe", ("sqlite NORMAL", sqlite, None),
                  ("pg synchronous_commit=off", off)),
                 ("on disk", ("sqlite FULL", sqlite, "FULL"), ("pg synchronous_commit=on", on))]
        for n, (durability, (lite_name, lite_url, sync), (pg_name, pg_url)) in enumerate(pairs):
            lite = write_latency_ms(lite_url, f"{tag}s{n}", sqlite_sync=sync)
            print(f"{durability:<10} {lite_name:<26} journal write ms: {_spread(lite)}")
            if pg_url:
                pg = write_latency_ms(pg_url, f"{tag}p{n}")
                print(f"{durability:<10} {pg_name:<26} journal write ms: {_spread(pg)}")
                ratio = statistics.median(pg) / statistics.median(lite)
                verdicts.append(ratio <= TARGET_RATIO)
                print(f"{durability:<10} PostgreSQL / SQLite: {ratio:.2f}x (target <= "
                      f"{TARGET_RATIO}x, margin {TARGET_RATIO - ratio:+.2f}x): "
                      f"{'ok' if ratio <= TARGET_RATIO else 'OVER TARGET'}")
        for name, url in [("sqlite", sqlite)] + ([("postgresql", args.pg)] if args.pg else []):
            rates = [claims_per_s(url, f"{tag}{r}") for r in range(ROUNDS)]
            print(f"{name:<10} claims/s with {CLAIMERS} controllers: {_spread(rates)} "
                  f"({ROUNDS} rounds of {CLAIM_LOTS} lots)")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
