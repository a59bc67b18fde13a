"""The simulator the lot benchmarks run against: ``bumpline sim`` in its own process, on
its own core where there are two, so the CPU measured in the benchmark's process is the
controller's alone (``benchmarks/bench_lot.py``)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drivers.line_config import LineConfig, LineConfigError, load_line_config
from sequences.recipes.validate import load_valid_recipe

SIM_START_TIMEOUT_S = 30.0  # wall seconds for the simulator to write its configuration
SIM_ALARM = re.compile(r"\balarm (\d+)\b")


@functools.cache
def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(controller CPUs, simulator CPUs): one core each when there are two or more, so the
    simulator's work never lands on the core whose CPU time is being measured.

    Split once, from the affinity the process started with: asked again after the
    controller pinned itself it saw one core, and every simulator started after that
    inherited the controller's core (its catching up on the physics then delayed the
    controller's replies and its wake-ups)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _on_cpu(cpus: set[int] | None) -> Any:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    return pin


def _bumpline() -> list[str]:
    script = Path(sys.executable).with_name("bumpline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "controller.cli"]


@contextlib.contextmanager
def simulator(speed: float, workdir: Path, seed: int,
              recipe: str) -> Iterator[tuple[LineConfig, Path]]:
    """``bumpline sim`` as a subprocess (with a plater when ``recipe`` has a barrier step);
    yields its line configuration and its log file."""
    config_path = workdir / f"sim-line-{speed:g}x-{time.monotonic_ns()}.toml"
    log_path = config_path.with_suffix(".log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [*_bumpline(), "sim", "--speed", f"{speed:g}", "--seed", str(seed),
             "--config-out", str(config_path), *_plater_args(recipe)],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
            preexec_fn=_on_cpu(split_cpus()[1]))
        try:
            yield _wait_for_config(proc, config_path, log_path), log_path
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _plater_args(recipe: str) -> list[str]:
    """A recipe with a barrier step needs the line's plater (the default line has none)."""
    needs = any(s.kind == "barrier" for s in load_valid_recipe(recipe).steps)
    return ["--platers", "1"] if needs else []


def _wait_for_config(proc: subprocess.Popen[bytes], path: Path, log_path: Path) -> LineConfig:
    deadline = time.monotonic() + SIM_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench_lot: the simulator exited ({proc.returncode}): "
                             f"{log_path.read_text(encoding='utf-8').strip()}")
        if path.exists():
            with contextlib.suppress(LineConfigError):  # still being written
                return load_line_config(path)
        time.sleep(0.05)  # polling a file another process writes; bounded by the deadline
    raise SystemExit(f"bench_lot: no line configuration in {path} after "
                     f"{SIM_START_TIMEOUT_S:g} s")


def sim_alarms(log_path: Path) -> list[str]:
    return [line.strip() for line in log_path.read_text(encoding="utf-8").splitlines()
            if SIM_ALARM.search(line)]
