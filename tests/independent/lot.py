"""A lot run by ``bumpline run`` on a line of our simulator's tools and independent ones."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.sim_process import stop, wait_for_line_config

BUMPLINE = [sys.executable, "-m", "controller.cli"]


async def run_lot(tmp_path: Path, served_tables: str, *, leave_out: tuple[str, ...],
                  speed: float, lot: str, recipe: str, db: Path, wafers: int = 2
                  ) -> tuple[int | None, str]:
    """``bumpline sim`` at ``speed`` with every role but ``leave_out`` (``"ovens"``, …: the
    independent tools serve those), one line file naming its tools and ``served_tables``,
    and a ``wafers``-wafer lot of ``recipe`` run on it: the run's exit status and output."""
    sim_config = tmp_path / "sim-line.toml"
    sim = await asyncio.to_thread(
        subprocess.Popen,
        [*BUMPLINE, "sim", "--speed", str(speed),
         *(arg for role in leave_out for arg in (f"--{role}", "0")),
         "--config-out", str(sim_config)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_for_line_config, sim_config, sim)
        line = tmp_path / "line.toml"
        line.write_text(sim_config.read_text() + "\n" + served_tables)
        proc = await asyncio.create_subprocess_exec(
            *BUMPLINE, "run", "--lot", lot, "--recipe", recipe, "--wafers", str(wafers),
            "--line", str(line), "--db", str(db), "--plain",
            "--report-dir", str(tmp_path / "reports"),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=100)
    finally:
        await asyncio.to_thread(stop, sim)
    return proc.returncode, out.decode()
