"""Controller CPU spent persisting one wafer's transitions (target: <= 20 ms per wafer).

A wafer of the rebump recipe makes about 30 transitions; each is one committed
transaction (persist before acting). This measures process CPU time, not wall
time, for a 25-wafer lot written to a SQLite file in WAL mode.

    .venv/bin/python benchmarks/bench_store.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from controller.store import Store

TRANSITIONS_PER_WAFER = 30
WAFERS = 25
BUDGET_MS = 20.0


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store(f"sqlite:///{Path(tmp) / 'bench.db'}") as store,
    ):
        store.create_lot(
            "BENCH",
            recipe_name="bench",
            recipe_version=1,
            recipe_hash="0" * 64,
            slots=list(range(1, WAFERS + 1)),
            user="bench",
        )
        wafers = [f"BENCH-{slot:02d}" for slot in range(1, WAFERS + 1)]
        store.record_transition(wafers[0], "warm", "up", "warm_up")  # first-use costs
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for wafer in wafers:
            for i in range(TRANSITIONS_PER_WAFER):
                store.record_transition(
                    wafer,
                    f"step{i}_running",
                    f"step{i + 1}_waiting",
                    "judged_ok",
                    "in window",
                    step_index=i,
                    step_kind="print",
                    tool="printer-1",
                    tool_time=12.5 * i,
                    measurements={"vol_mean_pct": 98.6, "bridges": 0},
                )
        cpu_ms = (time.process_time() - cpu0) * 1000 / WAFERS
        wall_ms = (time.perf_counter() - wall0) * 1000 / WAFERS
    verdict = "OK" if cpu_ms <= BUDGET_MS else "OVER BUDGET"
    print(
        f"{TRANSITIONS_PER_WAFER} transitions per wafer: {cpu_ms:.1f} ms CPU, {wall_ms:.1f} ms "
        f"wall per wafer (budget {BUDGET_MS:g} ms CPU) {verdict}"
    )
    return 0 if cpu_ms <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
