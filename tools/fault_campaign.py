"""The fault campaign (issue 10): the controller and the simulator as separate processes,
treated the way a fab treats them, and one table of what survived.

* kills: ``bumpline run`` SIGKILLed at seeded random moments mid-lot, then
  ``bumpline run --resume LOT`` (killed again, until the lot's kills are spent; the last
  resume runs to the end);
* faults: each fault kind of the simulator (sim/faults.py), one lot each;
* sim restart: the simulator SIGKILLed mid-lot and started again (a new process: its tools
  forget what they held, as after a power loss), the controller stopped and resumed on it;
* two controllers: two ``bumpline run`` on one line at once, and a resume of a lot that
  another controller runs.

What is counted comes from the simulator's own logs (the oven's and the cleaner's LOAD
lines, the printer's passes per wafer) and from the store:

* kills survived: SIGKILLs after which a resume ran (the only figure that should grow);
* resumes failed: a resume that crashed (a traceback, or an exit other than 0/3);
* wafers lost: a wafer left neither finished nor waiting for a person (mid-step for ever);
* double executions: a wafer printed, reflowed or cleaned more often than its recipe says;
* false holds: a wafer held or awaiting disposition for anything but a tool alarm, an
  open door or a result outside its window (a hold the faults or kills invented);
* lots stalled: a lot whose last run ended with work left that nobody was asked to decide.

Run it with ``make faults`` (a few minutes on two busy cores); ``--kills`` and ``--seed``
change the campaign, ``--keep DIR`` keeps the databases and logs to look at.

``--random N`` runs a randomized soak instead (tools/fault_soak.py): N fault plans, each
combining faults at random across the tools, recipes and moments of one lot, judged by the
checks above and a few more; ``--run K`` runs only plan K of the seed (its reproduction).
``--random N --independent`` runs its plans on the independent tools of tests/independent/
instead (tools/independent_soak.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.store import Store
from sequences.wafer.machine import AWAITING, FINAL_STATES, HELD

BUMPLINE = str(Path(sys.executable).with_name("bumpline"))
ROOT = Path(__file__).resolve().parents[1]  # the tree whose code the subprocesses run
RECIPE = "rebump-hipb-snpb"
PASSES = {"print": 2, "reflow": 2, "clean": 2}  # per wafer, in the recipe above
WAFERS = 3
SPEED = 300.0  # kills, restarts, two controllers
# The fault kinds run slower: at 300x the 30 tool seconds between two wafers at the oven exit
# (cap profile, 1000 mm/min) are 0.1 s wall, one reply timeout (decision 12), and a single
# lost reply there blocks the exit for real (530). At 100x three timeouts fit.
FAULT_SPEED = 100.0
RUN_LIMIT_S = 240.0  # wall seconds a run to the end may take before the lot counts stalled
COLUMNS = ("kills survived", "resumes failed", "wafers lost", "double executions",
           "false holds", "lots stalled")

# One lot per fault kind of the simulator (sim/faults.py).
FAULT_KINDS = {
    "drop": "printer-1:drop=0.2;cleaner-1:drop=0.1",
    "corrupt": "oven-1:corrupt=0.05;printer-1:corrupt=0.05",
    # Held back 0.15 s wall: past the 0.1 s reply timeout (a resend, a probe), yet only 45
    # tool seconds at this speed; 1 s would be 5 tool minutes, an exit blocked for real.
    "delay": "cleaner-1:delay=0.05,delay_s=0.15;oven-1:delay=0.05,delay_s=0.15",
    "busy": "oven-1:busy=0.2;cleaner-1:busy=0.2",
    "alarm": "printer-1:alarm=300@wafer2",
    "door": "cleaner-1:door=2000-2300",
}
# Why a hold or a failed step is a true one: the tool said so, or the wafer measured out.
# Recovery's "an engineer decides": a tool that forgot (restarted) what it may have done.
# "The belt stopped" is the oven's own flag on the wafer's result (alarm 530: a killed
# controller unloads nothing, the next wafer arrives behind the one at the exit). A
# cleaner's inputs (DI resistivity, chemistry, stripper low) are the tool's word too: our
# simulator never shows the first, the independent FC-1 does (the --independent soak).
# A HostLink tool's NAK 06 INTERLOCK outlasting its wait (decision 17), a ball supply short
# of the wafer's sites: the tool's word too (the independent soak, seed 4 plans 19 and 30).
# A cleaner still LOADED: a failed strip's wafer an alarm left LOADED, kept for an engineer
# (docs/protocols.md, the independent FC-2: "held after 1800 s"), the next wafers wait.
# Recovery's "no longer shows": a tool whose record of the wafer is gone, its command
# journalled (kills at exact boundaries, K3 of docs/audits/2026-12-02-recovery-vs-persist-
# before-acting.md: killed after the oven's exit UNLOAD, before step_done, the next wafer
# at the exit since; the independent soak, seed 5 plan 13): an engineer decides too.
TRUE_HOLD = re.compile(r"alarm \d+|door|outside|above|below|bridges|missing|residue|peak|"
                       r"TAL|SPI|window|ALARM|belt stopped|an engineer decides|"
                       r"recovery: .* no longer shows (?:it|the wafer)|"
                       r"resistivity low|chemistry low|stripper low|NAK 06 INTERLOCK|"
                       r"supply .* short of|"
                       r"cleaner-\d+: still busy \(LOADED\)", re.IGNORECASE)

_PASS_LINES = {
    "reflow": re.compile(r"oven-\d+ t=\S+ s: LOAD '([^']+)'"),
    "clean": re.compile(r"cleaner-\d+ t=\S+ s: LOAD '([^']+)'"),
    "print": re.compile(r"printer-\d+ t=\S+s READY -> PRINTING wafer '([^']+)'"),
    "place": re.compile(r"placer-\d+ t=\S+s READY -> PLACING wafer '([^']+)'"),
}


@dataclass
class Tally:
    figures: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.figures.update(other.figures)
        self.notes += other.notes


class Sim:
    """``bumpline sim`` out of process; its stderr is the tools' own log."""

    def __init__(self, work: Path, name: str, faults: str = "", seed: int = 0,
                 speed: float = SPEED, line: str | None = None,
                 options: Sequence[str] = ()) -> None:
        """``line``: the line configuration's name (default ``name``); a simulator started
        again for the same line writes the same file, as the line it stands for is one.
        ``options``: more of ``bumpline sim``'s (``--platers 1``, ``--cleaners fc-2``)."""
        self.config = work / f"{line or name}.toml"
        self.log = work / f"{name}.sim.log"
        args = [BUMPLINE, "sim", "--speed", str(speed), "--seed", str(seed),
                "--config-out", str(self.config)]
        if faults:
            args += ["--faults", faults]
        args += options
        self.args = args
        self.config.unlink(missing_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)
        deadline = time.monotonic() + 30
        while not self.config.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the simulator did not start (see {self.log})")
            time.sleep(0.05)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def run_args(sim: Sim, db: str, lot: str, *, new: bool, recipe: str = RECIPE,
             wafers: int = WAFERS, line: Path | None = None) -> list[str]:
    """``line``: a line configuration of the simulator's tools and others (default the
    simulator's own)."""
    line = line or sim.config
    args = [BUMPLINE, "run", "--line", str(line), "--db", db, "--plain",
            "--report-dir", str(line.parent / "reports")]
    if new:
        return args + ["--lot", lot, "--recipe", recipe, "--wafers", str(wafers)]
    return args + ["--resume", lot]


def start_run(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(args[1:])}\n".encode())
        out.flush()
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def finish_run(proc: subprocess.Popen[bytes], log: Path, tally: Tally, what: str,
               *, limit_s: float = RUN_LIMIT_S) -> int | None:
    """Wait for a run; its exit status, or None (and the lot counts stalled) when it does
    not end in time."""
    try:
        code = proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tally.figures["lots stalled"] += 1
        tally.notes.append(f"{what}: still running after {limit_s:.0f} s")
        return None
    text = log.read_text(errors="replace")
    if code not in (0, 3) or "Traceback" in text.rsplit("\n$ ", 1)[-1]:
        tally.figures["resumes failed"] += 1
        tally.notes.append(f"{what}: exit {code} (see {log})")
    return code


def wait_for_text(log: Path, text: str, *, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while text not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)


def started_lines(log: Path, lot: str) -> int:
    return log.read_text(errors="replace").count(f"bumpline: {lot} on the ")


def kill_run(proc: subprocess.Popen[bytes], after_s: float, tally: Tally, log: Path,
             lot: str, before: int) -> None:
    """SIGKILL the run ``after_s`` wall seconds after it started driving the lot (its start
    line): on a loaded machine start-up alone can outlast a kill timed from the launch, and
    such a kill tests nothing of recovery."""
    deadline = time.monotonic() + RUN_LIMIT_S
    while started_lines(log, lot) <= before and proc.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    try:
        proc.wait(timeout=after_s)
        return  # it ended before the kill: nothing was killed
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tally.figures["kills"] += 1


def lot_exists(db: str, lot: str) -> bool:
    with Store(db) as store:
        return any(info.id == lot for info in store.list_lots())


def lot_ended(db: str, lot: str) -> bool:
    if not lot_exists(db, lot):
        return False
    with Store(db) as store:
        return store.get_lot(lot).state in ("complete", "aborted")


def judge_lot(db: str, lot: str, tally: Tally, *, faulted: bool = False) -> list[str]:
    """Wafers lost, false holds and a stalled lot, from the store; the lot's wafer ids."""
    if not lot_exists(db, lot):
        tally.figures["lots stalled"] += 1
        tally.notes.append(f"lot {lot}: never queued")
        return []
    with Store(db) as store:
        state = store.get_lot(lot).state
        wafers = store.wafers(lot)
        waiting = False
        for wafer in wafers:
            if wafer.state in FINAL_STATES:
                continue
            if wafer.state in (HELD, AWAITING):
                waiting = True
                why = next((e.why for e in reversed(store.events(wafer.id))
                            if e.to_state == wafer.state), "")
                if not TRUE_HOLD.search(why or ""):
                    tally.figures["false holds"] += 1
                    tally.notes.append(f"{wafer.id}: {wafer.state}: {why}")
                elif faulted:
                    tally.figures["true holds"] += 1
                continue
            tally.figures["wafers lost"] += 1
            tally.notes.append(f"{wafer.id}: left {wafer.state} at {wafer.location}")
        if state not in ("complete", "aborted") and not waiting:
            tally.figures["lots stalled"] += 1
            tally.notes.append(f"lot {lot}: {state} with nothing for a person to decide")
        return [w.id for w in wafers]


def passes(logs: list[Path]) -> dict[str, Counter[str]]:
    """Per kind, how often each wafer went through a tool, from the simulators' logs."""
    seen: dict[str, Counter[str]] = {kind: Counter() for kind in _PASS_LINES}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            for kind, pattern in _PASS_LINES.items():
                m = pattern.search(line)
                if m:
                    seen[kind][m.group(1)] += 1
    return seen


def judge_passes(logs: list[Path], wafers: list[str], tally: Tally,
                 expected: Mapping[str, int] = PASSES) -> None:
    """``expected``: passes per wafer of each kind in its recipe (a cleaner's LOADs count its
    strips too)."""
    judge_counts(passes(logs), wafers, tally, expected)


def judge_counts(seen: Mapping[str, Counter[str]], wafers: list[str], tally: Tally,
                 expected: Mapping[str, int] = PASSES) -> None:
    """``seen``: per kind, how often each wafer went through a tool (``passes``)."""
    for kind, count in seen.items():
        for wafer in wafers:
            extra = count[wafer] - expected.get(kind, 0)
            if extra > 0:
                tally.figures["double executions"] += extra
                tally.notes.append(f"{wafer}: {count[wafer]} {kind} passes (recipe: "
                                   f"{expected.get(kind, 0)})")


# --- the scenarios ----------------------------------------------------------------------------


def kills(work: Path, rng: random.Random, total: int, per_lot: int) -> Tally:
    tally = Tally()
    sim = Sim(work, "kills")
    db = f"sqlite:///{work / 'kills.db'}"
    wafers: list[str] = []
    try:
        lot_number = 0
        while tally.figures["kills"] < total:
            lot_number += 1
            lot = f"K{lot_number}"
            log = work / f"{lot}.log"
            proc = start_run(run_args(sim, db, lot, new=True), log)
            for _ in range(per_lot):
                kill_run(proc, rng.uniform(0.2, 8.0), tally, log, lot, started_lines(log, lot))
                if proc.returncode != -signal.SIGKILL:
                    break  # the lot ended before this kill
                if lot_ended(db, lot):
                    break  # killed on its way out, the lot already complete: nothing to resume
                exists = lot_exists(db, lot)  # killed before the lot was queued: start it
                proc = start_run(run_args(sim, db, lot, new=not exists), log)
                tally.figures["kills survived"] += 1  # a run started again on what it left
            if proc.returncode != -signal.SIGKILL:
                finish_run(proc, log, tally, f"lot {lot}")
            wafers += judge_lot(db, lot, tally)
    finally:
        sim.stop()
    judge_passes([sim.log], wafers, tally)
    tally.notes += recovered(db)
    return tally


def recovered(db: str) -> list[str]:
    """What the kills exercised: the wafers recovery found mid-step and asked the tools
    about (not a figure of the table: a kill between two steps leaves none)."""
    with Store(db) as store:
        notes = [a.detail for a in store.audit_log() if a.action == "wafer.recovery"]
    again = sum("judged again from the measurements" in n for n in notes)
    return [f"{len(notes)} recovery notes on wafers found mid-step ({again} judged again "
            "from the measurements stored with their step)"]


def fault_kinds(work: Path) -> Tally:
    tally = Tally()
    for kind, spec in FAULT_KINDS.items():
        sim = Sim(work, f"fault-{kind}", faults=spec, seed=7, speed=FAULT_SPEED)
        db = f"sqlite:///{work / f'fault-{kind}.db'}"
        lot = f"F-{kind}"
        try:
            log = work / f"{lot}.log"
            finish_run(start_run(run_args(sim, db, lot, new=True), log), log, tally, lot)
        finally:
            sim.stop()
        judge_passes([sim.log], judge_lot(db, lot, tally, faulted=True), tally)
    return tally


def sim_restart(work: Path, rng: random.Random, rounds: int) -> Tally:
    tally = Tally()
    logs: list[Path] = []
    db = f"sqlite:///{work / 'restart.db'}"
    wafers: list[str] = []
    for n in range(1, rounds + 1):
        lot = f"R{n}"
        log = work / f"{lot}.log"
        sim = Sim(work, f"restart-{n}a", line=f"restart-{n}")
        logs.append(sim.log)
        proc = start_run(run_args(sim, db, lot, new=True), log)
        wait_for_text(log, f"{lot}-01 ", limit_s=60)  # the first step ended: mid-lot now
        time.sleep(rng.uniform(0.0, 3.0))
        sim.kill()  # the tools go away mid-lot; the controller calls them back
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)  # their endpoints are gone for good: stop it
        finish_run(proc, log, tally, f"lot {lot} stopping", limit_s=30)
        again = Sim(work, f"restart-{n}b", line=f"restart-{n}")
        logs.append(again.log)
        try:
            finish_run(start_run(run_args(again, db, lot, new=False), log), log, tally,
                       f"lot {lot} resumed on the restarted simulator")
        finally:
            again.stop()
        wafers += judge_lot(db, lot, tally)
    judge_passes(logs, wafers, tally)
    return tally


REFUSED = "is already run by another controller: host "  # the lease's refusal, holder named


def refused(proc: subprocess.Popen[bytes], log: Path, tally: Tally, what: str) -> bool:
    """A controller the lease kept off the line: exit 1, one line naming the holder. Any
    other end of a run that had to be refused is a failure."""
    try:
        code = proc.wait(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        code = None
    last = log.read_text(errors="replace").rsplit("\n$ ", 1)[-1].strip().splitlines()[1:]
    if code == 1 and len(last) == 1 and REFUSED in last[0]:
        tally.notes.append(f"{what}: refused ({last[0].split(': ', 1)[-1][:60]}…)")
        return True
    tally.figures["resumes failed"] += 1
    tally.notes.append(f"{what}: not refused by the lease: exit {code} (see {log})")
    return False


def two_controllers(work: Path) -> Tally:
    """Two ``run`` started on one line at the same moment: one wins the line, the other is
    refused naming it; a ``run --resume`` of the winner's lot while it runs is refused too.
    The refused lot then runs once the line is free."""
    tally = Tally()
    sim = Sim(work, "two")
    db = f"sqlite:///{work / 'two.db'}"
    lots = {"T-A": work / "T-A.log", "T-B": work / "T-B.log"}
    try:
        racing = {lot: start_run(run_args(sim, db, lot, new=True), log)
                  for lot, log in lots.items()}
        def started() -> str | None:  # the winner says so once it holds the line and its lot
            return next((lot for lot, log in lots.items()
                         if f"bumpline: {lot} on the " in log.read_text(errors="replace")), None)

        deadline = time.monotonic() + 60
        while started() is None and time.monotonic() < deadline and any(
                proc.poll() is None for proc in racing.values()):
            time.sleep(0.1)
        winner = started()
        if winner is None:
            tally.figures["lots stalled"] += 1
            tally.notes.append("neither controller started")
            winner = "T-A"
        loser = next(lot for lot in lots if lot != winner)
        again_log = work / f"{winner}-again.log"
        again = start_run(run_args(sim, db, winner, new=False), again_log)
        refused(racing[loser], lots[loser], tally, f"{loser} started with {winner}")
        refused(again, again_log, tally, f"{winner} resumed while it runs")
        finish_run(racing[winner], lots[winner], tally, winner)
        # The line is free: the refused lot runs now (it was never queued, so new).
        finish_run(start_run(run_args(sim, db, loser, new=not lot_exists(db, loser)),
                             lots[loser]), lots[loser], tally, f"{loser} afterwards")
        wafers = judge_lot(db, "T-A", tally) + judge_lot(db, "T-B", tally)
    finally:
        sim.stop()
    judge_passes([sim.log], wafers, tally)
    return tally


def table(rows: list[tuple[str, Tally]], columns: Sequence[str] = COLUMNS) -> Iterator[str]:
    head = ["scenario", *columns]
    cells = [[name, *(str(t.figures[c]) for c in columns)] for name, t in rows]
    total = Tally()
    for _, t in rows:
        total.add(t)
    cells.append(["total", *(str(total.figures[c]) for c in columns)])
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
    yield "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    yield "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    for row in cells:
        yield "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="controller SIGKILLs (>= 20)")
    parser.add_argument("--per-lot", type=int, default=4, help="kills per lot before it ends")
    parser.add_argument("--restarts", type=int, default=2, help="simulator restarts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep databases and logs here")
    parser.add_argument("--random", type=int, metavar="N",
                        help="a randomized soak of N fault plans instead (tools/fault_soak.py)")
    parser.add_argument("--run", type=int, metavar="K", action="append",
                        help="with --random: only plan K (1-based; repeatable)")
    parser.add_argument("--independent", action="store_true",
                        help="with --random: the plans on the independent tools of "
                        "tests/independent/ (tools/independent_soak.py)")
    args = parser.parse_args(argv)
    # The subprocesses run this tree's code, whatever the venv's editable install points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(args.seed)
    if args.random is not None:
        # beside this file: tools/ is the script's sys.path[0]
        if args.independent:
            from independent_soak import soak
        else:
            from fault_soak import soak
        return soak(args.random, args.seed, only=args.run, keep=args.keep)
    if args.independent:
        parser.error("--independent goes with --random N")
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-")))
        os.environ.pop("BUMPLINE_DB", None)
        started = time.monotonic()
        rows = [
            ("controller SIGKILL + resume", kills(work, rng, args.kills, args.per_lot)),
            ("each simulator fault kind", fault_kinds(work)),
            ("simulator killed, restarted", sim_restart(work, rng, args.restarts)),
            ("two controllers at once", two_controllers(work)),
        ]
        print(f"fault campaign, seed {args.seed}, {time.monotonic() - started:.0f} s wall:")
        for line in table(rows):
            print(line)
        for name, tally in rows:
            for note in tally.notes:
                print(f"  {name}: {note}")
        bad = sum(t.figures[c] for _, t in rows for c in COLUMNS[1:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
