"""The random soak on the independent tools (``tools/fault_campaign.py --random N --seed S
--independent``): the plans of tools/fault_soak.py, but each lot's tools drawn from the
independent implementations of the specs (tests/independent/, written by others than our
simulator's authors) with their own fault plans, the roles they do not serve left to
``bumpline sim``.

Each plan draws a shipped recipe, 2-4 wafers, 300-500x, which of the recipe's roles the
independent tools serve (at least one; the rest are our simulator's, run with those roles
left out, the line file joining the two as tests/independent/lot.py does), their options
(an oven counting the tunnel only, commands carried out a tick late, slow replies, where
CLEAR leaves a cleaner's interrupted wafer, the plater's event order ...) and 1-3 faults in
their own terms: tests/independent/faults.py plans (``510:z3@load2+40/120``, ``door@start1``,
``700@plate1``), alarms latched half way through the N-th wafer (``--printer-alarm 300@2``),
a HostLink tool's door open for a while (``--printer-door 900-1200``), supplies that run
out (paste, balls, flux, the nickel bath's life). About one plan in three
SIGKILLs the controller and resumes the lot.

A run is judged by fault_soak's checkers; what the simulator's log told there comes here
from the independent tools' logs (``--log``, written when they stop): their passes per wafer
(the oven's and the cleaner's LOAD/START, the printer's PRT and the mounter's PLC after the
LOD of a wafer, the plater's START of a carrier) and the alarms they latched.
"""

from __future__ import annotations

import json
import random
import shlex
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from fault_campaign import (
    ROOT,
    Sim,
    Tally,
    judge_counts,
    judge_lot,
    lot_exists,
    passes,
    run_args,
)
from fault_soak import (
    FC2_ALARMS,
    KIND_ROLE,
    ROLE_ALARMS,
    expected_passes,
    judge_alarms,
    judge_exits,
    judge_latched,
    judge_reasons,
    judge_tracebacks,
    judge_windows,
    recipes,
    run_lot,
)

from controller.store import Store

# The independent tools' servers, the roles each serves and the line's names for them.
SERVERS = {
    "modbus": ("tests.independent.servers", ("oven", "cleaner")),
    "serial": ("tests.independent.serial_servers", ("printer", "placer")),
    "plater": ("tests.independent.ep25_server", ("plater",)),
}
SERVER_OF = {role: name for name, (_, roles) in SERVERS.items() for role in roles}
SIM_LEAVE_OUT = {"oven": "--ovens", "cleaner": "--cleaners", "printer": "--printers",
                 "placer": "--placers", "plater": "--platers"}
# A section of a server's log (``# oven``) -> the tool's name in the line file.
SECTIONS = {"oven": "oven-1", "cleaner": "cleaner-1", "printer": "printer-1",
            "mounter": "placer-1", "plater": "plater-1"}
OVEN_CAUSES = ("510", "520", "540", "550", "560", "900")  # tests/independent/rf10n.py FAULTS
CLEANER_CAUSES = ("door", "di", "chem")  # fc1.py FAULTS
FC2_CAUSES = ("stripper", "tank")  # fc2.py's own
PLATER_CAUSES = ("400", "700", "710", "730", "900", "power")  # ep25.py FAULTS
WAFERS = (2, 4)  # short plans: wall time matters more than a lot's length here


@dataclass(frozen=True)
class Plan:
    number: int
    recipe: str
    kinds: tuple[str, ...]
    wafers: int
    speed: int
    independent: tuple[str, ...]  # the roles the independent tools serve
    server_args: dict[str, list[str]]  # server -> its options (faults included)
    faults: tuple[str, ...]  # what was drawn, for the description
    kill_after: float | None
    sim_seed: int = 0

    @property
    def sim_options(self) -> list[str]:
        out = [arg for role in self.independent for arg in (SIM_LEAVE_OUT[role], "0")]
        if "barrier" in self.kinds and "plater" not in self.independent:
            out += ["--platers", "1"]
        if "strip" in self.kinds and "cleaner" not in self.independent:
            out += ["--cleaners", "fc-2"]
        return out

    @property
    def expected_passes(self) -> dict[str, int]:
        return expected_passes(self.kinds)

    def describe(self) -> str:
        kill = f", SIGKILL at {self.kill_after:.1f} s + resume" if self.kill_after else ""
        options = "; ".join(f"{name} {' '.join(args)}" for name, args in
                            sorted(self.server_args.items()) if args)
        return (f"plan {self.number}: {self.recipe} x{self.wafers} at {self.speed}x, "
                f"independent {'+'.join(self.independent)}, faults "
                f"'{'; '.join(self.faults)}'{kill}" + (f" [{options}]" if options else ""))


@dataclass
class Drawn:
    """What one plan's draw has put together so far, per server."""

    args: dict[str, list[str]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    def add(self, role: str, *args: str, fault: bool = True) -> None:
        self.args.setdefault(SERVER_OF[role], []).extend(args)
        if fault:
            self.faults.append(f"{role}: {' '.join(args)}")

    def has(self, role: str, text: str) -> bool:
        """An option (``--paste-pct``), or an alarm plan's ``@N``, already drawn."""
        return any(a == text or (text.startswith("@") and a.endswith(text))
                   for a in self.args.get(SERVER_OF[role], []))


def _when(rng: random.Random, events: list[str], span: float) -> str:
    """A plan's WHEN[+DELAY][/DURATION] (tests/independent/faults.py): an event of the
    tool's own and its count, or a tool time; the cause lasts 30-400 tool s."""
    event = rng.choice([*events, "t"])
    when = f"t{rng.uniform(60, span):.0f}" if event == "t" else event
    return f"@{when}+{rng.uniform(0, 240):.0f}/{rng.uniform(30, 400):.0f}"


def draw_fault(rng: random.Random, role: str, plan_kinds: tuple[str, ...], wafers: int,
               drawn: Drawn) -> None:
    count = Counter(plan_kinds)
    span = 1200.0 * wafers
    nth = lambda passes: rng.randint(1, max(1, passes * wafers))  # noqa: E731
    if role == "oven":
        cause = rng.choice(OVEN_CAUSES)
        if cause in ("510", "560") and rng.random() < 0.5:
            cause += f":z{rng.randint(1, 10)}"
        events = [f"load{nth(count['reflow'])}", f"exit{nth(count['reflow'])}", "apply1"]
        drawn.add(role, "--oven-fault", cause + _when(rng, events, span))
    elif role == "cleaner":
        fc2 = "strip" in plan_kinds
        passes = count["clean"] + count["strip"]
        if rng.random() < 0.4:
            codes = ROLE_ALARMS["cleaner"] + (FC2_ALARMS if fc2 else ())
            code, n = rng.choice(codes), nth(passes)
            if not drawn.has(role, f"@{n}"):  # one alarm a wafer: the plan is a dict
                drawn.add(role, "--cleaner-alarm", f"{code}@{n}")
        else:
            cause = rng.choice(CLEANER_CAUSES + (FC2_CAUSES if fc2 else ()))
            events = [f"start{nth(passes)}", f"load{nth(passes)}"]
            drawn.add(role, "--cleaner-fault", cause + _when(rng, events, span))
    elif role == "printer":
        if rng.random() < 0.2 and not drawn.has(role, "--paste-pct"):
            # 0.4 % a print: empty (102, held for a FIL) after a few prints
            drawn.add(role, "--paste-pct", f"{rng.uniform(0.3, 2.5):.1f}")
        else:
            code, n = rng.choice(ROLE_ALARMS["printer"]), nth(count["print"])
            if not drawn.has(role, f"@{n}"):
                drawn.add(role, "--printer-alarm", f"{code}@{n}")
    elif role == "placer":
        supply = rng.random()
        if supply < 0.1 and not drawn.has(role, "--balls"):
            drawn.add(role, "--balls", str(rng.randint(100_000, 500_000)))  # 111
        elif supply < 0.2 and not drawn.has(role, "--flux-pct"):
            drawn.add(role, "--flux-pct", f"{rng.uniform(0.3, 2.0):.1f}")  # 121
        else:
            code, n = rng.choice(ROLE_ALARMS["placer"]), nth(count["place"])
            if not drawn.has(role, f"@{n}"):
                drawn.add(role, "--mounter-alarm", f"{code}@{n}")
    elif role == "plater":
        if rng.random() < 0.15 and not drawn.has(role, "--mto"):
            drawn.add(role, "--mto", f"{rng.uniform(5.4, 6.1):.2f}")  # 741 warning, 740 life
        else:
            cause = rng.choice(PLATER_CAUSES)
            events = ["load1", "start1", "plate1", "gold1", "done1"]
            drawn.add(role, "--fault", cause + _when(rng, events, 3000.0))


def draw_options(rng: random.Random, roles: Iterable[str], plan_kinds: tuple[str, ...],
                 drawn: Drawn) -> None:
    """The servers' other options: readings of the specs that differ from our simulator's."""
    roles = set(roles)
    if roles & {"oven", "cleaner"}:
        role = "oven" if "oven" in roles else "cleaner"
        if "cleaner" in roles and "strip" in plan_kinds:
            drawn.add(role, "--cleaner-model", "FC-2", fault=False)
        if "oven" in roles and rng.random() < 0.3:
            drawn.add(role, "--oven-belt-count", "tunnel", fault=False)
        if "cleaner" in roles and rng.random() < 0.3:
            drawn.add(role, "--interrupted", "loaded", fault=False)
        if rng.random() < 0.25:
            drawn.add(role, "--tick", f"{rng.uniform(1, 5):.1f}", "--pending",
                      rng.choice(["busy", "queue"]), fault=False)
        if rng.random() < 0.25:
            low = rng.uniform(0, 10)
            drawn.add(role, "--slow-ms", f"{low:.0f}", f"{low + rng.uniform(5, 40):.0f}",
                      fault=False)
    if "plater" in roles:
        if rng.random() < 0.3:
            drawn.add("plater", "--done-at", "alarm", fault=False)
        if rng.random() < 0.3:
            drawn.add("plater", "--warning-in-alarm", fault=False)
        if rng.random() < 0.5:
            drawn.add("plater", "--event-order", rng.choice(["before", "after"]), fault=False)


def draw(seed: int, number: int, table: dict[str, tuple[str, ...]]) -> Plan:
    """Plan ``number`` of ``seed``: drawn from a generator of its own."""
    rng = random.Random(f"independent soak {seed} {number}")
    recipe = rng.choice(sorted(table))
    kinds = table[recipe]
    wafers = rng.randint(*WAFERS)
    roles = sorted({KIND_ROLE[k] for k in kinds})
    independent = [r for r in roles if rng.random() < 0.5] or [rng.choice(roles)]
    drawn = Drawn()
    for _ in range(rng.randint(1, 3)):
        draw_fault(rng, rng.choice(independent), kinds, wafers, drawn)
    draw_options(rng, independent, kinds, drawn)
    speed = rng.randint(300, 500)
    kill_after = round(rng.uniform(0.5, 8.0), 1) if rng.random() < 0.3 else None
    sim_seed = rng.randrange(1000)
    # Drawn last, so the plans drawn before the HostLink tools had doors are the same still.
    for role, option in (("printer", "--printer-door"), ("placer", "--mounter-door")):
        if role in independent and rng.random() < 0.25:
            opens = rng.uniform(60, 1200.0 * wafers)
            drawn.add(role, option, f"{opens:.0f}-{opens + rng.uniform(30, 600):.0f}")
    return Plan(number, recipe, kinds, wafers, speed=speed, independent=tuple(independent),
                server_args=drawn.args, faults=tuple(drawn.faults), kill_after=kill_after,
                sim_seed=sim_seed)


# --- the servers --------------------------------------------------------------------------


class Server:
    """One of tests/independent's servers out of process: its ports (the JSON line it
    prints), its stderr in ``NAME.err``, its tools' logs in ``NAME.log`` once stopped."""

    def __init__(self, work: Path, lot: str, name: str, speed: int, options: list[str]) -> None:
        module = SERVERS[name][0]
        self.name = name
        self.log = work / f"{lot}.{name}.log"
        self.err = work / f"{lot}.{name}.err"
        self.log.unlink(missing_ok=True)
        self.args = [sys.executable, "-m", module, "--speed", str(speed),
                     "--log", str(self.log), *options]
        events = None
        if name == "modbus":
            # Its tools live on between requests only with --events (and the log gets times).
            # Without, the first request after start-up moved them through the minutes since
            # in 0.25 s steps before its reply: longer than the 0.1 s reply timeout at 300x+,
            # so a third of the plans began with a setup ahead failing on "no reply".
            events = work / f"{lot}.{name}.events"
            events.unlink(missing_ok=True)
            self.args += ["--events", str(events)]
        with self.err.open("ab") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE,
                                         stderr=err)
        stdout: IO[bytes] | None = self.proc.stdout
        assert stdout is not None
        first = stdout.readline()  # the ports, once it serves; empty if it died
        if not first:
            self.proc.wait()
            raise SystemExit(f"{module} did not start (see {self.err})")
        self.ports: dict[str, int] = json.loads(first)
        self.events = events if name == "modbus" else None
        self.speed = speed
        self.clock_from = datetime.now(UTC)  # its tool time 0 is a little before this

    def tool_s(self, at: datetime) -> float:
        """Its tool time at ``at``, a little short of the tool's own."""
        return (at - self.clock_from).total_seconds() * self.speed

    def terminate(self) -> None:
        """Stop its tools now (they live on between requests: an alarm latched after the
        run ended is none of the run's); ``stop`` waits for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it writes its log on the way out
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def tables(servers: dict[str, Server], roles: Iterable[str], fc2: bool) -> str:
    """The [tools.*] tables that reach the independent tools serving ``roles``."""
    host = "127.0.0.1"
    out = []
    for role in roles:
        ports = servers[SERVER_OF[role]].ports
        if role == "oven":
            out.append(f'[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\n'
                       f'host = "{host}"\nport = {ports["oven_port"]}\nunit = 1\n')
        elif role == "cleaner":
            out.append(f'[tools.cleaner-1]\nrole = "cleaner"\n'
                       f'model = "{"FC-2" if fc2 else "FC-1"}"\ntransport = "modbus-rtu"\n'
                       f'port = "socket://{host}:{ports["cleaner_port"]}"\nunit = 2\n')
        elif role in ("printer", "placer"):
            port = ports["printer_port" if role == "printer" else "mounter_port"]
            out.append(f'[tools.{role}-1]\nrole = "{role}"\ntransport = "serial"\n'
                       f'port = "socket://{host}:{port}"\n')
        elif role == "plater":
            out.append(f'[tools.plater-1]\nrole = "plater"\ntransport = "text-tcp"\n'
                       f'host = "{host}"\nport = {ports["plater_port"]}\n')
    return "\n".join(out)


# --- what the independent tools' logs say -------------------------------------------------


def sections(log: Path) -> dict[str, list[str]]:
    """A server's log by tool (``# oven`` ... lines); the link's lines left out."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    if not log.exists():
        return out
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("# "):
            name = line[2:].strip()
            current = out.setdefault(SECTIONS[name], []) if name in SECTIONS else None
        elif current is not None:
            current.append(line)
    return out


def events_until(events: Path, tool_s: float) -> dict[str, list[str]]:
    """The Modbus server's --events lines (``oven 12.3 alarm 560``) up to tool time
    ``tool_s``, by tool as ``sections`` gives them."""
    out: dict[str, list[str]] = {}
    for line in events.read_text(errors="replace").splitlines():
        name, _, rest = line.partition(" ")
        at, _, what = rest.partition(" ")
        if name in SECTIONS and float(at) <= tool_s:
            out.setdefault(SECTIONS[name], []).append(what)
    return out


def tool_passes(logs: dict[str, list[str]], served: Iterable[str]) -> dict[str, Counter[str]]:
    """Per kind, how often each wafer went through an independent tool serving ``served``
    (tool names): what the tool carried out, from its own log."""
    seen: dict[str, Counter[str]] = {k: Counter() for k in
                                     ("reflow", "clean", "print", "place", "barrier")}
    for tool in served:
        loaded: list[str] = []
        before = ""
        for line in logs.get(tool, []):
            word, _, rest = line.partition(" ")
            if tool == "oven-1" and word == "load":
                seen["reflow"][rest] += 1
            elif tool == "cleaner-1" and word in ("start", "strip"):
                seen["clean"][rest] += 1
            elif tool == "cleaner-1" and word == "done" and rest.split(" ")[1:3] == [
                    "status", "2"] and before.partition(" ")[2] == rest.split(" ")[0]:
                # ABORTED at once: the START that takes out a wafer a CLEAR left LOADED
                # (the abort of flux_clean: UNLOAD only from DONE), not a clean run again
                seen["clean"][rest.split(" ")[0]] -= 1
            elif tool in ("printer-1", "placer-1"):
                if word == "lod":
                    loaded = [rest]
                # PRT/PLC that latched at once (paste, balls, flux out) moved nothing
                elif word in ("prt", "plc") and loaded and not before.startswith("alarm "):
                    seen["print" if word == "prt" else "place"][loaded[0]] += 1
            elif tool == "plater-1":
                if word == "load":
                    loaded = rest.split(" ")[-1].split(",")
                elif word == "start":
                    for wafer in loaded:
                        seen["barrier"][wafer] += 1
            before = line
    return seen


def tool_alarms(logs: dict[str, list[str]], served: Iterable[str]) -> Counter[tuple[str, int]]:
    """The alarms the independent tools latched. Each of them logs an alarm only when it
    shows it (one ALARM_CODE, ALR, ALARM? at a time; the plater's 741 is a warning, pushed,
    never ``alarm`` in its log)."""
    out: Counter[tuple[str, int]] = Counter()
    for tool in served:
        for line in logs.get(tool, []):
            word, _, rest = line.partition(" ")
            if word == "alarm" and rest[:3].isdigit():
                out[(tool, int(rest[:3]))] += 1
    return out


# --- one plan -----------------------------------------------------------------------------


def run_plan(plan: Plan, work: Path, seed: int) -> tuple[Tally, list[int | None], list[str]]:
    tally = Tally()
    lot = f"I{plan.number}"
    db = f"sqlite:///{work / f'{lot}.db'}"
    log = work / f"{lot}.log"
    line = work / f"{lot}-line.toml"
    state = work / f"{lot}-state"
    state.mkdir(exist_ok=True)
    names = sorted({SERVER_OF[r] for r in plan.independent})
    servers: dict[str, Server] = {}
    sim: Sim | None = None
    codes: list[int | None] = []
    try:
        for name in names:
            servers[name] = Server(work, lot, name, plan.speed, plan.server_args.get(name, []))
        sim = Sim(work, lot, seed=plan.sim_seed, speed=plan.speed,
                  options=[*plan.sim_options, "--state-dir", str(state)])
        line.write_text(sim.config.read_text() + "\n"
                        + tables(servers, plan.independent, "strip" in plan.kinds))

        def args(new: bool) -> list[str]:
            assert sim is not None
            return run_args(sim, db, lot, new=new, recipe=plan.recipe, wafers=plan.wafers,
                            line=line)

        codes += run_lot(args, plan.kill_after, db, lot, log, tally)
    finally:
        for server in servers.values():
            server.terminate()
        if sim is not None:
            sim.stop()
        for server in servers.values():
            server.stop()
    last = last_word(db, lot)
    logs: dict[str, list[str]] = {}
    latched: dict[str, list[str]] = {}  # what the tools did while the run had the lot
    for server in servers.values():
        logs.update(sections(server.log))
        latched.update(sections(server.log) if server.events is None or last is None
                       else events_until(server.events, server.tool_s(last)))
    served = [f"{role}-1" for role in plan.independent]
    assert sim is not None
    wafers = judge_lot(db, lot, tally, faulted=True)
    seen = passes([sim.log])
    for kind, counts in tool_passes(logs, served).items():
        seen.setdefault(kind, Counter()).update(counts)
    judge_counts(seen, wafers, tally, plan.expected_passes)
    judge_exits(codes, tally)
    judge_tracebacks([log, sim.log, *(s.err for s in servers.values())], tally)
    if lot_exists(db, lot):
        judge_alarms(sim.log, db, tally)
        judge_latched(tool_alarms(latched, served), db, tally)
        judge_reasons(db, lot, tally)
        judge_windows(db, lot, len(plan.kinds), tally)
    return tally, codes, reproduce(plan, seed, sim, servers, line, db)


def last_word(db: str, lot: str) -> datetime | None:
    """When the run last moved a wafer of the lot or set or cleared an alarm. The Modbus
    server's tools live on between requests (--events), as real ones do, and the
    controller does not watch a tool it no longer uses: an alarm latched on the empty oven
    during the run's last half second (150 tool s at 300x) is beyond the run, as one after
    its exit is. Our simulator's tools live on too; the sim soak stops them at the exit."""
    if not lot_exists(db, lot):
        return None
    with Store(db) as store:
        times = [e.at for w in store.wafers(lot) for e in store.events(w.id)]
        times += [t for a in store.alarms() for t in (a.set_at, a.cleared_at) if t]
    return max(times, default=None)


def reproduce(plan: Plan, seed: int, sim: Sim, servers: dict[str, Server], line: Path,
              db: str) -> list[str]:
    here = Path(sys.executable)
    lot = f"I{plan.number}"
    run = run_args(sim, db, lot, new=True, recipe=plan.recipe, wafers=plan.wafers, line=line)
    return [f"PYTHONPATH={ROOT} {here} {ROOT / 'tools' / 'fault_campaign.py'} --random 1 "
            f"--seed {seed} --independent --run {plan.number} --keep "
            f"/tmp/isoak-{seed}-{plan.number}",
            "or by hand (the line file: the simulator's, then the tables of the servers' "
            f"ports, as {line.name}):",
            *(f"  PYTHONPATH={ROOT} {shlex.join(s.args)} &" for s in servers.values()),
            f"  PYTHONPATH={ROOT} {shlex.join(sim.args)} &",
            f"  PYTHONPATH={ROOT} {shlex.join(run)}"
            + ("  # SIGKILL it then, and run --resume" if plan.kill_after else "")]


def soak(count: int, seed: int, *, only: list[int] | None = None,
         keep: str | None = None) -> int:
    from fault_soak import soak as soak_with

    table = recipes()
    return soak_with(count, seed, only=only, keep=keep,
                     draw_plan=lambda s, n: draw(s, n, table), run=run_plan,
                     title="random fault soak on the independent tools")
