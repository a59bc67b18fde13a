"""Issue 13's three figures in one run: store write latency and controller CPU per wafer
on PostgreSQL vs SQLite (target: PostgreSQL <= 1.5x each), and lots claimed per second
with three controllers claiming at once.

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
figure is the throughput of ``Store.claim_lot`` with three controllers (each a
process of its own, as on a real fab) racing for the same queue; each round is
checked against the database once every controller has ended (each lot claimed
exactly once, by the line that reported it), and a controller that fails is
reported with its error, never as a lot lost. Controller CPU per wafer is
``bench_lot.run_lot``'s figure (a lot on the simulated line, ``--lot-wafers``),
on SQLite and PostgreSQL run after run.

    .venv/bin/python benchmarks/bench_db.py [--pg postgresql+psycopg://user@host/db] [--busy]
                                            [--lot-wafers N] [--rtt-ms MS]

``--rtt-ms MS`` also times PostgreSQL's crash-safe journal writes through a relay
adding MS per round trip (``netdelay.py``): what a line PC pays on a plant network,
where a transaction's round trips, not the server, are most of a write.

Without ``--pg`` (or ``$BUMPLINE_BENCH_PG``) only SQLite is measured, and it says
so in one line. The PostgreSQL database given must be a throwaway one. ``--busy``
keeps one core spinning in another process while it measures (a loaded line PC).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench_lot import DEFAULT_SEED, DEFAULT_SPEED, TARGET_PG_CPU_RATIO, run_lot
from netdelay import relay
from sqlalchemy import make_url, text

from controller.store import Store

WRITES = 300  # journal writes timed per back end
CLAIM_LOTS = 60
CLAIMERS = 3
ROUNDS = 5
TARGET_RATIO = 1.5
# Claims have no target in issue 13; a line takes a lot every few hours, so this floor
# (ours) only catches a claim that has become pathological (locks held, retries).
CLAIM_FLOOR = 5.0
LOT_WAFERS = 10  # wafers per lot for the controller CPU figure (--lot-wafers)
LOT_RUNS = 3


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


def floor_ms(url: str) -> list[float]:
    """Milliseconds per the cheapest write a server can commit: one one-row INSERT into a
    table with no index, sent with BEGIN and COMMIT as one query on the DBAPI connection
    (no SQLAlchemy). A journal write does three statements on indexed tables: when this
    floor alone is near 1.5x SQLite's whole journal write, the crash-safe target is below
    what a client-server database can do on this host (issue 13's argument)."""
    with Store(url) as store:
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS floor_probe (n integer)")
            raw.commit()
            raw.autocommit = True  # the query says BEGIN and COMMIT itself
            times = []
            for _ in range(WRITES + 1):
                t0 = time.perf_counter()
                cursor.execute("BEGIN; INSERT INTO floor_probe VALUES (1); COMMIT")
                times.append((time.perf_counter() - t0) * 1000)
            return times[1:]  # the first pays for the plan
        finally:
            raw.close()


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


def _claimer(url: str, line: str, start: Any, results: Any) -> None:
    """One controller (its own process, its own engine): claim and start lots until none is left.

    Reports (line, lots claimed, error or None): an error is the benchmark's failure,
    said as it is, never counted as a lot lost."""
    claimed: list[str] = []
    error = None
    try:
        with Store(url) as mine:  # opened (and migrated) before the race starts
            start.wait()
            while (lot := mine.claim_lot(line, lambda _lot: True)) is not None:
                if lot.id in claimed:  # started above: it must never be claimed again
                    raise RuntimeError(f"lot {lot.id} came back after it was started")
                claimed.append(lot.id)
                mine.set_lot_state(lot.id, "running")  # claimed lots leave the queue
    except Exception as exc:  # noqa: BLE001 - reported by the parent, with the line
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        start.abort()
    results.put((line, claimed, error))


def claims_per_s(url: str, tag: str) -> tuple[float, dict[str, int]]:
    """Lots claimed per second by CLAIMERS controller processes racing for CLAIM_LOTS lots,
    and how many each claimed.

    Checked after every process has ended (every commit landed), against the
    database as well as the processes' own lists: every lot claimed exactly once,
    by the line the database names, and started; a controller that failed is
    reported with its error."""
    lots = [f"C{tag}{n:03d}" for n in range(CLAIM_LOTS)]
    with Store(url) as store:
        if left := store.list_lots(["queued"]):  # the claimers would take them too
            raise SystemExit(f"bench_db: {len(left)} lots already queued in {url} (e.g. "
                             f"{left[0].id}): give an empty, throwaway database")
        for lot_id in lots:
            _lot(store, lot_id)
    context = multiprocessing.get_context("spawn")  # a controller is a process of its own
    start = context.Barrier(CLAIMERS + 1, timeout=120)
    results = context.Queue()
    lines = [f"bench-{n}-{tag}" for n in range(CLAIMERS)]
    procs = [context.Process(target=_claimer, args=(url, line, start, results))
             for line in lines]
    for proc in procs:
        proc.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass  # a controller failed before the race: its error is read below
    t0 = time.perf_counter()
    reports = [results.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    problems = [f"controller {line} failed: {error}" for line, _, error in reports if error]
    by_line = {line: claimed for line, claimed, _ in reports}
    every = [lot for claimed in by_line.values() for lot in claimed]
    twice = sorted({lot for lot in every if every.count(lot) > 1})
    if twice:
        problems.append(f"claimed twice: {', '.join(twice)}")
    if strays := sorted(set(every) - set(lots)):
        problems.append(f"claimed lots this round did not queue: {', '.join(strays)}")
    with Store(url) as store:
        for lot_id in lots:
            lot = store.get_lot(lot_id)
            reported = [line for line, claimed in by_line.items() if lot_id in claimed]
            if lot.state != "running" or [lot.line_id] != reported:
                problems.append(f"lot {lot_id}: {lot.state} for line {lot.line_id or 'any'} "
                                f"in the database, claimed by {reported or 'nobody'}")
    if problems:
        raise SystemExit("bench_db: the claim race went wrong:\n  " + "\n  ".join(problems))
    return CLAIM_LOTS / elapsed, {line: len(claimed) for line, claimed in by_line.items()}


def cpu_per_wafer(args: argparse.Namespace, workdir: Path) -> bool:
    """Controller CPU per wafer of a lot on the simulated line (``bench_lot.run_lot``), on
    SQLite and, given ``--pg``, on PostgreSQL, run after run (the same minutes of a
    loaded machine); the median of ``LOT_RUNS`` runs each. True when the ratio meets
    its target (or PostgreSQL is not measured) and every run is correct."""
    backends = [("sqlite", None)] + ([("postgresql", args.pg)] if args.pg else [])
    cpus: dict[str, list[float]] = {name: [] for name, _ in backends}
    correct = True
    for run in range(1, LOT_RUNS + 1):
        for name, url in backends:
            result, _ = run_lot(DEFAULT_SPEED, args.lot_wafers, workdir, DEFAULT_SEED, run, url)
            cpus[name].append(result.cpu_ms_per_wafer)
            if not result.correct:
                correct = False
                print(f"{name:<10} lot run {run} not correct: {result.states}, "
                      f"{'; '.join(result.unfinished + result.store_alarms) or 'exit blocked'}")
    for name, values in cpus.items():
        print(f"{name:<10} controller CPU per wafer ms: median {statistics.median(values):.2f} "
              f"(runs {', '.join(f'{v:.1f}' for v in values)}; {args.lot_wafers}-wafer lots "
              f"at {DEFAULT_SPEED:g}x)")
    if not args.pg:
        return correct
    ratio = statistics.median(cpus["postgresql"]) / statistics.median(cpus["sqlite"])
    print(f"CPU/wafer  PostgreSQL / SQLite: {ratio:.2f}x (target <= {TARGET_PG_CPU_RATIO}x, "
          f"margin {TARGET_PG_CPU_RATIO - ratio:+.2f}x): "
          f"{'ok' if ratio <= TARGET_PG_CPU_RATIO else 'OVER TARGET'}")
    return correct and ratio <= TARGET_PG_CPU_RATIO


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("BUMPLINE_BENCH_PG"),
                        help="a throwaway PostgreSQL database URL")
    parser.add_argument("--rtt-ms", type=float, default=0.0, metavar="MS",
                        help="also time PostgreSQL's journal writes through a relay adding "
                             "at least MS per round trip (a plant network; its timers wake "
                             "at millisecond resolution: benchmarks/netdelay.py)")
    parser.add_argument("--busy", action="store_true",
                        help="keep one core busy in another process while measuring")
    parser.add_argument("--lot-wafers", type=int, default=LOT_WAFERS, metavar="N",
                        help=f"wafers per lot for controller CPU per wafer (default "
                             f"{LOT_WAFERS}; 0 leaves it out)")
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
                if sync is None:  # crash-safe: how far down a server can go at all
                    least = floor_ms(pg_url)
                    print(f"{durability:<10} {'pg floor (1-row txn)':<26} ms: {_spread(least)} "
                          f"= {statistics.median(least) / statistics.median(lite):.2f}x "
                          f"SQLite's whole journal write")
        if args.pg and args.rtt_ms:
            parsed = make_url(args.pg)
            with relay(args.rtt_ms, parsed.host or "127.0.0.1", parsed.port or 5432) as port:
                far = parsed.set(host="127.0.0.1", port=port).render_as_string(
                    hide_password=False)
                pg = write_latency_ms(with_synchronous_commit(far, "off"), f"{tag}r")
            print(f"{'network':<10} {f'pg off, RTT {args.rtt_ms:g} ms':<26} journal write ms: "
                  f"{_spread(pg)} (benchmarks/netdelay.py; no target: SQLite has no network)")
        for name, url in [("sqlite", sqlite)] + ([("postgresql", args.pg)] if args.pg else []):
            rounds = [claims_per_s(url, f"{tag}{r}") for r in range(ROUNDS)]
            rates = [rate for rate, _ in rounds]
            per = [sorted(counts.values()) for _, counts in rounds]
            rate = statistics.median(rates)
            verdicts.append(rate >= CLAIM_FLOOR)
            print(f"{name:<10} claims/s with {CLAIMERS} controller processes: {_spread(rates)} "
                  f"({ROUNDS} rounds of {CLAIM_LOTS} lots; lots per controller "
                  f"{', '.join('/'.join(map(str, p)) for p in per)}); floor {CLAIM_FLOOR:g}/s, "
                  f"margin {rate - CLAIM_FLOOR:+.1f}/s: {'ok' if rate >= CLAIM_FLOOR else 'UNDER'}")
        if args.lot_wafers:
            verdicts.append(cpu_per_wafer(args, Path(tmp)))
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
