"""The factory host link under load: what the line pays, and how fast reports flow.

    .venv/bin/python benchmarks/bench_gem.py [--events N]

One process: the GEM equipment on a fresh SQLite file, a host (tests/gem_host.py)
on a local socket that acknowledges everything, N step events with one report
linked to them. It measures

* publish cost: wall time of ``LineEventStream.publish`` per event with GEM
  subscribed (the only thing the line itself waits for);
* live delivery: S6F11 per second, each sent and acknowledged (W-bit, T3);
* spooling: S6F11 per second written to the spool with the link down, then per
  second sent from the spool after S6F23.

Targets: publish <= 0.1 ms per event, live >= 200 S6F11/s, spool write and spool
transmit >= 100 messages/s each. Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from controller.gem import ids  # noqa: E402
from controller.gem.secs2 import BOOLEAN, U1, U4, L  # noqa: E402
from controller.line.events import EventKind  # noqa: E402
from tests.gem_host import GemLine  # noqa: E402

TARGETS = {"publish_ms": 0.1, "live_per_s": 200.0, "spool_write_per_s": 100.0,
           "spool_send_per_s": 100.0}


async def run(events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        line = GemLine(f"sqlite:///{Path(tmp) / 'gem.db'}")
        eq = await line.start()
        try:
            host = await line.host()
            await eq.operator_online()
            vids = L(*(U4(v) for v in (ids.DV_LOT_ID, ids.DV_WAFER_ID, ids.DV_STEP)))
            await host.request(2, 33, L(U4(1), L(L(U4(1), vids))))
            await host.request(2, 35, L(U4(2), L(L(U4(ids.CE_STEP_STARTED), L(U4(1))))))
            await host.request(2, 37, L(BOOLEAN(True), L()))

            def publish_all() -> float:
                started = time.perf_counter()
                for step in range(events):
                    line.stream.publish(EventKind.STEP_STARTED, lot_id="B1", wafer_id="B1-01",
                                        step=step % 60000, step_kind="print")
                return time.perf_counter() - started

            started = time.perf_counter()
            publish_s = publish_all()
            await eq.drained_after_events()
            await host.count(6, 11, events)
            live_s = time.perf_counter() - started

            await host.close()
            await eq.server.connection.closed.wait()
            started = time.perf_counter()
            publish_all()
            await eq.drained_after_events()
            spool_write_s = time.perf_counter() - started
            assert eq.db.spool_count() == events

            host = await line.host()
            started = time.perf_counter()
            await host.request(6, 23, U1(0))
            await host.count(6, 11, events)
            await eq.drained()
            spool_send_s = time.perf_counter() - started
            assert eq.db.spool_count() == 0
            await host.close()
        finally:
            await line.close()
    return {"publish_ms": 1000 * publish_s / events, "live_per_s": events / live_s,
            "spool_write_per_s": events / spool_write_s,
            "spool_send_per_s": events / spool_send_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    results = asyncio.run(run(args.events))
    failed = False
    for key, value in results.items():
        target = TARGETS[key]
        ok = value <= target if key == "publish_ms" else value >= target
        failed |= not ok
        sign = "<=" if key == "publish_ms" else ">="
        print(f"{key:18} {value:10.3f}   target {sign} {target:g}   {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
