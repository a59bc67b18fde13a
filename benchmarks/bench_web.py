"""The operator screen must not slow the line: controller CPU per wafer with and without it.

    .venv/bin/python benchmarks/bench_web.py [--speed S] [--wafers N] [--runs N] [--clients N]

The lot of ``bench_lot.py`` (its recipe, seed and speed), on a simulator in its
own process, run by ``LineController`` in this process. Runs alternate without
and with the screen: with it, ``web_server`` serves from the controller's loop
and ``--clients`` (3) browsers' worth of traffic comes from a separate process
(so their CPU is not counted): each logs in, opens the server-sent event stream
naming the lot page's live parts (the lot and the alarm banner), takes those the
screen pushes from the stream and fetches the others after events, at most every
1 s (what static/line.js does). The CPU counted is
this process's (every thread: the pages run in Starlette's thread pool).

Reported: median and spread (min-max) of controller CPU per wafer for each,
and the difference of the medians. Target: with the screen, the median stays
within bench_lot's CPU target (`TARGET_CPU_MS_PER_WAFER`) and every run is correct (every
wafer complete, no oven exit blocked: at 1600x a 10 ms stall of the loop is
16 tool seconds). Exit 0 when met.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:  # run as a plain script from anywhere
        sys.path.insert(0, str(path))

from bench_lot import (  # noqa: E402
    DEFAULT_SEED,
    DEFAULT_SPEED,
    RECIPE,
    TARGET_CPU_MS_PER_WAFER,
    _new_lot,
)

from benchmarks.lot_sim import simulator, split_cpus  # noqa: E402
from controller.line.controller import LineController  # noqa: E402
from controller.line.events import LineEventStream  # noqa: E402
from controller.store import Store  # noqa: E402
from controller.web.app import WebContext, web_server  # noqa: E402
from controller.web.users import Role  # noqa: E402
from drivers.clock import ScaledClock  # noqa: E402
from drivers.tools import open_line  # noqa: E402
from sequences.recipes.validate import load_valid_recipe  # noqa: E402

PASSWORD = "bench-pass-123"
READY = "clients ready"
RUN_TIMEOUT_S = 300.0  # wall seconds for one lot; a stuck lot is reported, not waited for

# The browsers, in their own process, as static/line.js does: log in, open /events naming
# the page's live parts, fetch them once, then take the pushed ones from the stream and
# fetch the others after "line" messages (at most every 1 s).
CLIENTS = r"""
import asyncio, json, re, sys
import httpx

URL, N, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PARTS = ["/lots/BENCH?live=1", "/alarms/banner"]
THROTTLE_S = 1.0

async def browser(i, ready):
    async with httpx.AsyncClient(base_url=URL, timeout=None) as client:
        page = await client.get("/")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        await client.post("/login", data={"name": "bench", "password": PASSWORD,
                                          "csrf": token})
        pending, pushed = None, set()  # until the screen says which it pushes

        async def fetch(parts, wait):
            await asyncio.sleep(wait)
            for part in parts:
                await client.get(part)

        params = [("part", p) for p in PARTS]
        async with client.stream("GET", "/events", params=params) as events:
            await fetch(PARTS, 0)
            ready.release()
            kind = ""
            async for line in events.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "pushed":
                    pushed = set(json.loads(line[6:]))
                elif line.startswith("data: ") and kind == "line":
                    rest = [p for p in PARTS if p not in pushed]
                    if rest and (pending is None or pending.done()):
                        pending = asyncio.create_task(fetch(rest, THROTTLE_S))

async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(browser(i, ready)) for i in range(N)]
    for _ in range(N):
        await ready.acquire()
    print("clients ready", flush=True)
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


async def _lot(controller: LineController, store: Store, wafers: int) -> tuple[float, str]:
    """(controller CPU ms per wafer, '' or what went wrong) for the lot."""
    cpu0 = time.process_time()
    try:
        await asyncio.wait_for(controller.run(["BENCH"]), RUN_TIMEOUT_S)
    except TimeoutError:
        return 1000 * (time.process_time() - cpu0) / wafers, "did not finish"
    cpu = 1000 * (time.process_time() - cpu0) / wafers
    states = [w.state for w in store.wafers("BENCH")]
    blocked = [a for a in store.alarms() if a.code == 530]
    problem = ""
    if states.count("complete") != wafers:
        problem = f"{states.count('complete')}/{wafers} complete"
    if blocked:
        problem += (", " if problem else "") + "oven exit blocked (530)"
    return cpu, problem


async def _run(config, db: Path, wafers: int, clients: int,  # noqa: ANN001
               workdir: Path) -> tuple[float, str]:
    """One lot (with ``clients`` > 0: that many screens open on it)."""
    clock = ScaledClock(config.time_scale)
    store = Store(f"sqlite:///{db}")
    try:
        _new_lot(store, "BENCH", wafers)
        events = LineEventStream("line", clock.now)
        async with open_line(config, clock) as tools:
            controller = LineController(store, tools, clock, recipes=load_valid_recipe,
                                        user="bench", events=events)
            if not clients:
                return await _lot(controller, store, wafers)
            context = WebContext(store, events, workdir / "reports")
            context.users.add("bench", Role.OPERATOR, PASSWORD)
            async with web_server(context, "127.0.0.1:0") as url:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", CLIENTS, url.rstrip("/"), str(clients), PASSWORD,
                    stdout=asyncio.subprocess.PIPE, preexec_fn=_pin_elsewhere)
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), 60)
                    if READY not in line.decode():
                        raise SystemExit("bench_web: the clients did not start")
                    result = await _lot(controller, store, wafers)
                    push = context.push
                    print(f"    pushes: {push.renders} parts rendered, "
                          f"{1000 * push.render_cpu_s / wafers:.1f} ms CPU per wafer rendering",
                          file=sys.stderr, flush=True)
                    return result
                finally:
                    proc.terminate()
                    await proc.wait()
    finally:
        store.close()


def _pin_elsewhere() -> None:
    cpus = split_cpus()[1]
    if cpus:
        os.sched_setaffinity(0, cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED)
    parser.add_argument("--wafers", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--clients", type=int, default=3, help="open screens (default 3)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile of the runs with the screen here (pstats)")
    args = parser.parse_args(argv)
    controller_cpus = split_cpus()[0]
    if controller_cpus:
        os.sched_setaffinity(0, controller_cpus)
    without: list[float] = []
    with_web: list[float] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_web-") as tmp:
        workdir = Path(tmp)
        for run in range(1, args.runs + 1):
            for clients, into in ((0, without), (args.clients, with_web)):
                label = f"run {run} {'with' if clients else 'without'}"
                with simulator(args.speed, workdir, DEFAULT_SEED, RECIPE) as (config, _log):
                    db = workdir / f"web-{run}-{clients}.db"
                    profiler = cProfile.Profile() if args.profile and clients else None
                    if profiler is not None:
                        profiler.enable()  # the loop's thread; pages in the pool are not seen
                    cpu, problem = asyncio.run(_run(config, db, args.wafers, clients, workdir))
                    if profiler is not None:
                        profiler.disable()
                        profiler.dump_stats(args.profile)
                into.append(cpu)
                if problem:
                    problems.append(f"{label}: {problem}")
                print(f"  {label}: {cpu:.1f} ms/wafer {problem}", file=sys.stderr, flush=True)
    print(f"bench_web: {args.wafers}-wafer lot at {args.speed:g}x, {args.runs} runs each, "
          f"{args.clients} screens open (SSE with pushed live parts) in the 'with' runs")
    for name, values in (("without the screen", without), ("with the screen", with_web)):
        print(f"  {name:<20} median {statistics.median(values):6.1f} ms/wafer, spread "
              f"{min(values):.1f}-{max(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})")
    extra = statistics.median(with_web) - statistics.median(without)
    ok = statistics.median(with_web) <= TARGET_CPU_MS_PER_WAFER and not problems
    print(f"  the screen costs {extra:+.1f} ms/wafer (difference of the medians)")
    for problem in problems:
        print(f"  not correct: {problem}")
    print(f"{'PASS' if ok else 'FAIL'}  controller CPU per wafer with the screen, median "
          f"{statistics.median(with_web):.1f} ms   target <= {TARGET_CPU_MS_PER_WAFER:g} ms, "
          "every run correct")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
