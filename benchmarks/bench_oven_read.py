"""How much the oven driver adds to one Modbus read.

Starts a simulated RF-10N on a local Modbus TCP port and, in one run, times the
driver's ``ReflowOven.zone_temperatures()`` (one read of IR 0-9, decoded to °C
with failed thermocouples as None) against a bare pymodbus
``read_input_registers`` of the same 10 registers on the same server,
alternating the two call by call so both see the same machine load.

PASS when median(driver) / median(raw) <= 1.1, measured with a second process keeping
one core busy; exits 1 on FAIL.

    .venv/bin/python benchmarks/bench_oven_read.py [-n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from benchmarks.load import busy_core  # noqa: E402
from drivers.clock import ScaledClock  # noqa: E402
from drivers.modbus_link import ModbusLink  # noqa: E402
from drivers.oven import ReflowOven  # noqa: E402
from sim.modbus_server import OvenServer  # noqa: E402
from sim.oven import OvenModel  # noqa: E402

TARGET_RATIO = 1.1  # issue 12, with a second process keeping one core busy
WARM_UP = 100


async def run(n: int) -> int:
    clock = ScaledClock(1.0)
    server = OvenServer(OvenModel(seed=1), clock, name="oven-bench")
    host, port = await server.start_tcp()
    link = ModbusLink.tcp(host, port, tool="oven-bench", unit=1, timeout_s=1.0)
    raw = AsyncModbusTcpClient(host, port=port, timeout=1.0, retries=0, reconnect_delay=0)
    try:
        await link.open()
        if not await raw.connect():
            print(f"cannot connect the raw client to {host}:{port}")
            return 1
        oven = ReflowOven(link, clock)

        async def driver_read() -> None:
            await oven.zone_temperatures()

        async def raw_read() -> None:
            reply = await raw.read_input_registers(0, count=10, device_id=1)
            if reply.isError():
                raise RuntimeError(f"raw read failed: {reply}")

        for _ in range(WARM_UP):
            await driver_read()
            await raw_read()

        driver_ns: list[int] = []
        raw_ns: list[int] = []
        for i in range(n):
            # Alternate which goes first so neither always follows the other.
            pair = ((driver_read, driver_ns), (raw_read, raw_ns))
            for call, times in pair if i % 2 == 0 else reversed(pair):
                start = time.perf_counter_ns()
                await call()
                times.append(time.perf_counter_ns() - start)
    finally:
        raw.close()
        await link.close()
        await server.stop()

    driver_us = statistics.median(driver_ns) / 1000
    raw_us = statistics.median(raw_ns) / 1000
    ratio = driver_us / raw_us
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"zone read, {n} calls each against the simulated oven on {host}:{port}")
    print(f"  driver zone_temperatures()   median {driver_us:8.1f} µs")
    print(f"  raw read_input_registers     median {raw_us:8.1f} µs")
    print(f"  ratio {ratio:.3f} (target <= {TARGET_RATIO}, margin {TARGET_RATIO - ratio:+.3f}; "
          f"one core kept busy by another process): {verdict}")
    return 0 if verdict == "PASS" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls of each kind (default 2000)")
    args = parser.parse_args()
    with busy_core():  # a plant PC or CI machine runs other things too
        return asyncio.run(run(args.n))


if __name__ == "__main__":
    sys.exit(main())
