"""Speed target: ``PastePrinter.status()`` costs little more than raw pyserial.

Starts a simulated WP-300 on a pty in a child process, then on the same pty
measures, in alternating rounds:

* raw pyserial: write the STS request frame, read until the reply's ``\\n``;
* the driver: ``await printer.status()`` (framing, checksum, SEQ check and the
  typed ``PrinterStatus``).

Targets: driver median <= 1 ms and driver/raw ratio <= 1.5. Exits 1 on FAIL.

    python benchmarks/bench_printer_status.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import busy_core  # noqa: E402
from drivers.clock import ScaledClock  # noqa: E402
from drivers.hostlink import encode_request, parse_reply  # noqa: E402
from drivers.printer import PastePrinter  # noqa: E402
from drivers.serial_link import HostLinkPort  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ROUNDS = 20  # alternating rounds: both sides see the same machine load
MAX_RATIO = 1.3  # issue 12, with a second process keeping one core busy
MAX_MEDIAN_S = 0.001

# The simulated printer, alone in its own process so neither side steals the other's loop.
SIM = """
import asyncio, sys
from sim.clock import ScaledClock
from sim.printer import PastePrinterModel
from sim.serial_server import SerialToolServer

async def main():
    async with SerialToolServer(PastePrinterModel(seed=0), ScaledClock(1.0), name="printer-1") as s:
        print(await s.start_pty(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def raw_round(path: str, n: int, first_seq: int) -> list[float]:
    frames = [encode_request((first_seq + i) % 100, "STS") for i in range(n)]
    times: list[float] = []
    with serial.serial_for_url(path, baudrate=115200, timeout=1.0) as ser:
        ser.reset_input_buffer()
        for frame in frames:
            t0 = time.perf_counter()
            ser.write(frame)
            reply = ser.read(ser.in_waiting or 1)
            while not reply.endswith(b"\n"):
                chunk = ser.read(ser.in_waiting or 1)
                if not chunk:
                    raise SystemExit(f"raw pyserial: no reply to {frame!r}")
                reply += chunk
            times.append(time.perf_counter() - t0)
    parse_reply(reply)  # the last one at least was a proper reply
    return times


async def driver_round(path: str, n: int) -> list[float]:
    times: list[float] = []
    async with HostLinkPort(path, tool="printer-1") as port:
        printer = PastePrinter(port, ScaledClock(1.0))
        for _ in range(n):
            t0 = time.perf_counter()
            await printer.status()
            times.append(time.perf_counter() - t0)
        if port.retransmissions:
            print(f"  note: {port.retransmissions} retransmissions during the driver round")
    return times


def main() -> int:
    with busy_core():  # a plant PC or CI machine runs other things too
        return _measure()


def _measure() -> int:
    sim = subprocess.Popen(
        [sys.executable, "-c", SIM], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        path = sim.stdout.readline().strip()
        if not path:
            print("FAIL: the simulated printer did not start")
            return 1
        per_round = max(1, N // ROUNDS)
        raw_round(path, 100, 0)  # warm-up both paths
        asyncio.run(driver_round(path, 100))
        raw: list[float] = []
        drv: list[float] = []
        for r in range(ROUNDS):  # alternate so drift in machine load hits both alike
            raw += raw_round(path, per_round, (50 + r * per_round) % 100)
            drv += asyncio.run(driver_round(path, per_round))
    finally:
        if sim.stdin:
            sim.stdin.close()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()

    raw_med, drv_med = statistics.median(raw), statistics.median(drv)
    ratio = drv_med / raw_med
    ok = ratio <= MAX_RATIO and drv_med <= MAX_MEDIAN_S
    print(f"STS round trip on a pty, {len(drv)} requests each (simulated WP-300)")
    print(f"  raw pyserial      median {raw_med * 1e6:8.1f} us")
    print(f"  PastePrinter      median {drv_med * 1e6:8.1f} us   (p90 "
          f"{statistics.quantiles(drv, n=10)[-1] * 1e6:.1f} us)")
    print(f"  ratio driver/raw  {ratio:.2f}  (target <= {MAX_RATIO}, margin "
          f"{MAX_RATIO - ratio:+.2f}; one core kept busy by another process)")
    print(f"  driver median     {'<=' if drv_med <= MAX_MEDIAN_S else '>'} "
          f"{MAX_MEDIAN_S * 1e3:g} ms target")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
