"""Store write latency on PostgreSQL vs SQLite (target: PostgreSQL <= 1.5x), and lots
claimed per second with three controllers claiming at once.

A step's journal writes are committed transactions, one per wafer transition
(persist before acting), so their latency is what a line on PostgreSQL pays per
step. The claim figure is the throughput of ``Store.claim_lot`` with three
controllers (each its own engine, in threads) racing for the same queue.

    .venv/bin/python benchmarks/bench_db.py [--pg postgresql+psycopg://user@host/db]

Without ``--pg`` (or ``$BUMPLINE_BENCH_PG``) only SQLite is measured, and it says
so in one line. The PostgreSQL database given must be a throwaway one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from controller.store import Store

WRITES = 300  # journal writes timed per back end
CLAIM_LOTS = 60
CLAIMERS = 3
ROUNDS = 5
TARGET_RATIO = 1.5


def _lot(store: Store, lot_id: str, slots: int = 1) -> None:
    store.create_lot(lot_id, recipe_name="bench", recipe_version=1, recipe_hash="0" * 64,
                     slots=list(range(1, slots + 1)), user="bench")


def write_latency_ms(url: str, tag: str) -> list[float]:
    """Milliseconds per committed journal write (a wafer transition)."""
    with Store(url) as store:
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
    assert len(claimed) == len(set(claimed)) == CLAIM_LOTS, "a lot claimed twice or lost"
    return CLAIM_LOTS / elapsed


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"median {statistics.median(values):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("BUMPLINE_BENCH_PG"),
                        help="a throwaway PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        if args.pg:
            urls["postgresql"] = args.pg
        else:
            print("PostgreSQL: not measured (give --pg URL or $BUMPLINE_BENCH_PG)")
        medians = {}
        for name, url in urls.items():
            tag = str(os.getpid() % 1000)
            writes = write_latency_ms(url, tag)
            medians[name] = statistics.median(writes)
            rates = [claims_per_s(url, f"{tag}{r}") for r in range(ROUNDS)]
            print(f"{name:<10} journal write ms: {_spread(writes)} ({WRITES} writes)")
            print(f"{name:<10} claims/s with {CLAIMERS} controllers: {_spread(rates)} "
                  f"({ROUNDS} rounds of {CLAIM_LOTS} lots)")
    if "postgresql" in medians:
        ratio = medians["postgresql"] / medians["sqlite"]
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(f"PostgreSQL / SQLite journal write: {ratio:.2f}x (target <= {TARGET_RATIO}x): "
              f"{verdict}")
        return 0 if ratio <= TARGET_RATIO else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
