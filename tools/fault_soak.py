"""The fault campaign's random mode (``tools/fault_campaign.py --random N --seed S``): a soak
of N fault plans, each one lot of a shipped recipe on its own simulated line, with 1-4 faults
of sim/faults.py's keys combined at random over the recipe's tools and the lot's moments (and
now and then the cleaner's DI water bad for a while: no alarm, an interlock hold looked at
again), and now and then a controller SIGKILL + resume.

Each plan is drawn from its own generator (``--seed S`` and its number), so ``--run K``
repeats plan K alone, exactly as drawn. Each run is judged by the campaign's checkers
(wafers lost, double executions, false holds, lots stalled, runs failed) and by these:

* tracebacks: a Python traceback (or an asyncio "never retrieved" / "Exception in callback")
  in the controller's output or the simulator's log;
* undocumented exits: an exit status docs/cli.md does not list;
* alarms unrecorded: an alarm the simulator latched (its log) that is not a row of the
  store's alarms (``bumpline alarms``) for that tool and code;
* holds unexplained: a wafer held or awaiting disposition whose reason is empty or names no
  tool, alarm, interlock or measured result;
* complete outside window: a wafer ``complete`` with a step result outside its recipe's
  window (or a status other than OK, an oven flag, a step missing), unless a person
  continued it.

A run that does not end within ``LIMIT_S`` wall seconds is a hang (counted in "lots
stalled"). Anomalies are printed with the command lines that reproduce them.
"""

from __future__ import annotations

import random
import re
import shlex
import signal
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fault_campaign import (
    COLUMNS,
    ROOT,
    TRUE_HOLD,
    Sim,
    Tally,
    finish_run,
    judge_lot,
    judge_passes,
    kill_run,
    lot_ended,
    lot_exists,
    run_args,
    start_run,
    table,
)

from controller.store import Store
from sequences.wafer.machine import AWAITING, COMPLETE, HELD
from sim.faults import DOOR_ROLES

LIMIT_S = 300.0  # wall seconds a run may take before it counts as a hang
EXTRA = ("tracebacks", "undocumented exits", "alarms unrecorded", "holds unexplained",
         "complete outside window")
ANOMALIES = (*COLUMNS[1:], *EXTRA)
DOCUMENTED_EXITS = (0, 1, 2, 3, 130, 141)  # docs/cli.md, "exit status"

# Each role's alarm table in its spec (../shared/specs/): every code listed.
ROLE_ALARMS: dict[str, tuple[int, ...]] = {
    "printer": (102, 210, 220, 300, 400, 900),  # paste-printer.md, Alarms
    "placer": (111, 121, 230, 240, 400, 900),  # ball-placer.md, Alarms
    "oven": (510, 520, 530, 540, 550, 560, 900),  # reflow-oven.md, Alarms
    "cleaner": (400, 610, 620, 630, 640),  # flux-cleaner.md, Alarms (the FC-1 has no e-stop)
    "plater": (400, 700, 710, 720, 730, 740, 741, 900),  # barrier-plater.md, Alarms
}
FC2_ALARMS = (650, 660)  # flux-cleaner-fc2.md, "Alarms added"
WARNINGS = {("plater", 741)}  # "warning only": pushed, never latched, no alarm row
KIND_ROLE = {"print": "printer", "place": "placer", "reflow": "oven", "clean": "cleaner",
             "strip": "cleaner", "barrier": "plater"}
RATES = {  # fault keys of probability, and the roles whose wire they mean something on
    "drop": ("printer", "placer", "oven", "cleaner", "plater"),
    "corrupt": ("printer", "placer", "oven", "cleaner"),
    "delay": ("printer", "placer", "oven", "cleaner", "plater"),
    "busy": ("oven", "cleaner"),
}
SHIPPED = ROOT / "sequences" / "recipes" / "shipped"

_SIM_ALARM = re.compile(
    r" INFO .*?\b((?:printer|placer|oven|cleaner|plater)-\d+)\b.*?\balarm (\d{3})\b"
    r"(?! cleared| while)")
_MODBUS_CLEAR = re.compile(r"\b((?:oven|cleaner)-\d+) t=\S+ s: CLEAR alarms \[([\d, ]+)\]")
_CRASH = re.compile(r"Traceback \(most recent call last\)|exception was never retrieved|"
                    r"Exception in callback")
_NAMES_CAUSE = re.compile(r"\b(?:printer|placer|oven|cleaner|plater)-\d+\b|alarm \d{3}|"
                          r"interlock|door", re.IGNORECASE)


def recipes() -> dict[str, tuple[str, ...]]:
    """The shipped recipes: name -> the kinds of their steps, in order."""
    out = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        out[data["name"]] = tuple(step["kind"] for step in data["steps"])
    return out


def expected_passes(kinds: tuple[str, ...]) -> dict[str, int]:
    """Passes per wafer through each kind of tool in a recipe of these step kinds (a
    cleaner's passes count its strips too)."""
    count = Counter(kinds)
    return {"print": count["print"], "place": count["place"], "reflow": count["reflow"],
            "clean": count["clean"] + count["strip"], "barrier": count["barrier"]}


@dataclass(frozen=True)
class Plan:
    number: int
    recipe: str
    kinds: tuple[str, ...]
    wafers: int
    speed: int
    seed: int
    faults: str
    kill_after: float | None  # wall seconds after the run drives its lot; None: no kill

    @property
    def options(self) -> list[str]:
        out = []
        if "barrier" in self.kinds:
            out += ["--platers", "1"]
        if "strip" in self.kinds:
            out += ["--cleaners", "fc-2"]
        return out

    @property
    def expected_passes(self) -> dict[str, int]:
        return expected_passes(self.kinds)

    def describe(self) -> str:
        kill = f", SIGKILL at {self.kill_after:.1f} s + resume" if self.kill_after else ""
        return (f"plan {self.number}: {self.recipe} x{self.wafers} at {self.speed}x, sim seed "
                f"{self.seed}, faults '{self.faults}'{kill}")


def draw(seed: int, number: int, table: dict[str, tuple[str, ...]]) -> Plan:
    """Plan ``number`` of ``seed``: drawn from a generator of its own."""
    rng = random.Random(f"fault-soak {seed} {number}")
    recipe = rng.choice(sorted(table))
    kinds = table[recipe]
    wafers = rng.randint(2, 5)
    roles = sorted({KIND_ROLE[k] for k in kinds})
    fc2 = "strip" in kinds
    span = 1200.0 * wafers  # about a lot's tool seconds
    per_tool: dict[str, list[str]] = {}
    for _ in range(rng.randint(1, 4)):
        role = rng.choice(roles)
        keys = per_tool.setdefault(f"{role}-1", [])
        what = rng.choice(["alarm", "alarm", "alarm", "rate", "rate"]
                          + (["door"] if role in DOOR_ROLES else [])
                          + (["disconnect"] if role == "plater" else []))
        taken = {k.partition("=")[0] for k in keys}
        if what == "alarm":
            codes = ROLE_ALARMS[role] + (FC2_ALARMS if role == "cleaner" and fc2 else ())
            code = rng.choice(codes)
            if rng.random() < 0.5:  # the plater counts batches, the others wafers
                nth = 1 if role == "plater" else rng.randint(1, wafers)
                keys.append(f"alarm={code}@wafer{nth}")
            else:
                keys.append(f"alarm={code}@{rng.uniform(60, span):.0f}")
        elif what == "door" and "door" not in taken:
            opens = rng.uniform(60, span)
            keys.append(f"door={opens:.0f}-{opens + rng.uniform(30, 600):.0f}")
        elif what == "disconnect":
            keys.append(f"disconnect={rng.uniform(60, span):.0f}")
        elif what == "rate":
            key = rng.choice([k for k, on in RATES.items() if role in on])
            if key not in taken:
                keys.append(f"{key}={rng.uniform(0.01, 0.05):.3f}")
                if key == "delay":  # past the 0.1 s reply timeout, yet short in tool time
                    keys.append("delay_s=0.15")
    speed, sim_seed = rng.randint(300, 500), rng.randrange(1000)
    kill_after = round(rng.uniform(0.5, 8.0), 1) if rng.random() < 0.3 else None
    # Drawn last, so the plans drawn before are the same but for it: the cleaner's DI water
    # bad for a while (no alarm: 630 only at a START; the wafers held at its interlock and
    # looked at again, controller/line/rechecks.py), in one plan of a cleaner in four.
    if "cleaner" in roles and rng.random() < 0.25:
        bad = rng.uniform(60, span)
        per_tool.setdefault("cleaner-1", []).append(
            f"di={bad:.0f}-{bad + rng.uniform(60, 2400):.0f}")
    faults = ";".join(f"{tool}:{','.join(keys)}" for tool, keys in sorted(per_tool.items())
                      if keys)
    return Plan(number, recipe, kinds, wafers, speed=speed, seed=sim_seed, faults=faults,
                kill_after=kill_after)


def run_plan(plan: Plan, work: Path) -> tuple[Tally, list[int | None], Sim]:
    tally = Tally()
    lot = f"S{plan.number}"
    state = work / f"{lot}-state"  # a plater's state file: its own, not the last plan's
    state.mkdir(exist_ok=True)
    sim = Sim(work, lot, faults=plan.faults, seed=plan.seed, speed=plan.speed,
              options=[*plan.options, "--state-dir", str(state)])
    db = f"sqlite:///{work / f'{lot}.db'}"
    log = work / f"{lot}.log"
    codes: list[int | None] = []

    def args(new: bool) -> list[str]:
        return run_args(sim, db, lot, new=new, recipe=plan.recipe, wafers=plan.wafers)

    try:
        codes += run_lot(args, plan.kill_after, db, lot, log, tally)
    finally:
        sim.stop()
    wafers = judge_lot(db, lot, tally, faulted=True)
    judge_passes([sim.log], wafers, tally, plan.expected_passes)
    judge_exits(codes, tally)
    judge_tracebacks([log, sim.log], tally)
    if lot_exists(db, lot):
        judge_alarms(sim.log, db, tally)
        judge_reasons(db, lot, tally)
        judge_windows(db, lot, len(plan.kinds), tally)
    return tally, codes, sim


def judge_exits(codes: list[int | None], tally: Tally) -> None:
    for code in codes:
        if code is not None and code not in DOCUMENTED_EXITS:
            tally.figures["undocumented exits"] += 1
            tally.notes.append(f"exit status {code}: not one docs/cli.md lists")


def judge_tracebacks(logs: list[Path], tally: Tally) -> None:
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()
        for n, line in enumerate(lines):
            if _CRASH.search(line):
                tally.figures["tracebacks"] += 1
                last = next((x for x in lines[n + 1:] if x and not x.startswith(" ")), "")
                tally.notes.append(f"{log.name}:{n + 1}: {line.strip()[:80]} ... {last[:120]}")


def sim_alarms(log: Path) -> Counter[tuple[str, int]]:
    """The alarms the simulator latched and showed its host, by tool and code, from its log.
    Not shown: a HostLink tool's alarm latched under a more serious one ("(not shown)"), and
    a Modbus tool's latched while another is: ALARM_CODE shows the oldest, and one CLEAR
    clears them all (docs/simulator.md), so its host never reads it."""
    seen: Counter[tuple[str, int]] = Counter()
    latched: dict[str, set[int]] = {}
    for line in log.read_text(errors="replace").splitlines():
        cleared = _MODBUS_CLEAR.search(line)
        if cleared:
            latched.get(cleared.group(1), set()).difference_update(
                int(c) for c in cleared.group(2).split(","))
            continue
        m = _SIM_ALARM.search(line)
        if m and "refused" not in line and "CLEAR" not in line:
            tool, code = m.group(1), int(m.group(2))
            if " s: alarm " in line:  # a Modbus tool's event log
                under = latched.setdefault(tool, set())
                hidden = bool(under)
                under.add(code)
                if hidden:
                    continue
            seen[(tool, code)] += 1
    return seen


def judge_alarms(log: Path, db: str, tally: Tally) -> None:
    judge_latched(sim_alarms(log), db, tally)


def judge_latched(latched: Counter[tuple[str, int]], db: str, tally: Tally) -> None:
    """``latched``: the alarms tools latched and showed their host, by tool and code."""
    with Store(db) as store:
        stored = {(a.tool, a.code) for a in store.alarms()}
    for (tool, code), times in sorted(latched.items()):
        if (tool.rsplit("-", 1)[0], code) in WARNINGS or (tool, code) in stored:
            continue
        tally.figures["alarms unrecorded"] += 1
        tally.notes.append(f"{tool} latched alarm {code} ({times}x in its log); "
                           "no row of the store's alarms")


def judge_reasons(db: str, lot: str, tally: Tally) -> None:
    with Store(db) as store:
        for wafer in store.wafers(lot):
            if wafer.state not in (HELD, AWAITING):
                continue
            event = next((e for e in reversed(store.events(wafer.id))
                          if e.to_state == wafer.state), None)
            why = (event.why if event else "") or ""
            if _NAMES_CAUSE.search(why) or (event and event.tool and TRUE_HOLD.search(why)):
                continue
            tally.figures["holds unexplained"] += 1
            tally.notes.append(f"{wafer.id}: {wafer.state} with reason {why!r}")


def outside(windows: dict[str, Any], results: dict[str, Any] | None) -> list[str]:
    """What of a step's results lies outside its windows (or says it did not pass)."""
    if results is None:
        return ["no results"]
    bad = []
    for key, (lo, hi) in windows.items():
        value = results.get(key)
        if value is None:
            bad.append(f"{key} missing")
        elif (lo is not None and value < lo) or (hi is not None and value > hi):
            bad.append(f"{key} {value} outside [{lo}, {hi}]")
    if results.get("status", "OK") != "OK":
        bad.append(f"status {results['status']}")
    if results.get("flags"):
        bad.append(f"oven flags {results['flags']}")
    return bad


def judge_windows(db: str, lot: str, steps: int, tally: Tally) -> None:
    with Store(db) as store:
        for wafer in store.wafers(lot):
            if wafer.state != COMPLETE:
                continue
            latest = {}
            for step in store.wafer_history(wafer.id).steps:  # attempts in order
                latest[step.step_index] = step
            problems = [f"step {n} missing" for n in range(1, steps + 1) if n not in latest]
            for n, step in sorted(latest.items()):
                if step.disposition == "continue":
                    continue  # a person's word
                problems += [f"step {n} {step.kind} on {step.tool}: {p}"
                             for p in outside(step.windows, step.results)]
            if problems:
                tally.figures["complete outside window"] += 1
                tally.notes.append(f"{wafer.id}: complete with {'; '.join(problems)}")


def reproduce(plan: Plan, seed: int, sim: Sim, work: Path) -> list[str]:
    here = Path(sys.executable)
    campaign = (f"PYTHONPATH={ROOT} {here} {ROOT / 'tools' / 'fault_campaign.py'} "
                f"--random 1 --seed {seed} --run {plan.number} --keep /tmp/soak-{seed}-"
                f"{plan.number}")
    db = f"sqlite:///{work / f'S{plan.number}.db'}"
    run = run_args(sim, db, f"S{plan.number}", new=True, recipe=plan.recipe,
                   wafers=plan.wafers)
    return [campaign,
            f"or by hand: PYTHONPATH={ROOT} {shlex.join(sim.args)} &",
            f"            PYTHONPATH={ROOT} {shlex.join(run)}"
            + ("  # SIGKILL it then, and run --resume" if plan.kill_after else "")]


class SoakPlan(Protocol):
    number: int
    recipe: str
    wafers: int

    def describe(self) -> str: ...


def run_lot(args: Callable[[bool], list[str]], kill_after: float | None, db: str, lot: str,
            log: Path, tally: Tally) -> list[int | None]:
    """``bumpline run`` of the plan's lot (``args(new)``), SIGKILLed ``kill_after`` s in and
    resumed if drawn: the exit status of the run that finished it (none if killed on its
    way out)."""
    proc: Any = start_run(args(True), log)
    if kill_after is not None:
        kill_run(proc, kill_after, tally, log, lot, 0)
        if proc.returncode == -signal.SIGKILL:
            if lot_ended(db, lot):
                return []  # killed on its way out: nothing to resume
            proc = start_run(args(not lot_exists(db, lot)), log)
            tally.figures["kills survived"] += 1
    return [finish_run(proc, log, tally, f"lot {lot}", limit_s=LIMIT_S)]


def run_own(plan: Plan, work: Path, seed: int) -> tuple[Tally, list[int | None], list[str]]:
    """Plan ``plan`` on our simulator: its tally, exit statuses, and how to run it again."""
    tally, codes, sim = run_plan(plan, work)
    return tally, codes, reproduce(plan, seed, sim, work)


def soak(count: int, seed: int, *, only: list[int] | None = None,
         keep: str | None = None,
         draw_plan: Callable[[int, int], Any] | None = None,
         run: Callable[[Any, Path, int], tuple[Tally, list[int | None], list[str]]] = run_own,
         title: str = "random fault soak") -> int:
    """``draw_plan(seed, number)`` and ``run(plan, work, seed)``: another kind of plan (the
    independent tools' soak, tools/independent_soak.py); by default this module's."""
    if draw_plan is None:
        table_ = recipes()
        draw_plan = lambda seed, number: draw(seed, number, table_)  # noqa: E731
    plans: list[SoakPlan] = [draw_plan(seed, n) for n in (only or range(1, count + 1))]
    rows: list[tuple[str, Tally]] = []
    bad_runs = []
    started = time.monotonic()
    with ExitStack() as stack:
        if keep:
            work = Path(keep)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        for plan in plans:
            t0 = time.monotonic()
            print(plan.describe(), flush=True)
            tally, codes, how = run(plan, work, seed)
            bad = sum(tally.figures[c] for c in ANOMALIES)
            print(f"  -> exit {codes}, {time.monotonic() - t0:.0f} s wall, "
                  f"{bad} anomalies", flush=True)
            rows.append((f"{plan.number} {plan.recipe} x{plan.wafers}", tally))
            if bad:
                bad_runs.append((plan, tally, how))
        print(f"\n{title}, seed {seed}, {len(plans)} runs, "
              f"{time.monotonic() - started:.0f} s wall:")
        for line in table(rows, ("kills survived", *ANOMALIES)):
            print(line)
        for plan, tally, how in bad_runs:
            print(f"\n{plan.describe()}")
            for note in tally.notes:
                print(f"  {note}")
            for line in how:
                print(f"  {line}")
    return 1 if bad_runs else 0
