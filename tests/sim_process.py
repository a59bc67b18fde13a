"""Waiting for a `bumpline sim` process started by a test."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def wait_for_line_config(path: Path, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Until the simulator has written its line configuration.

    `bumpline sim` renames the file into place once it is complete, so its existence
    is the signal. Another process's file offers nothing to await: poll, bounded.
    """
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"bumpline sim exited ({proc.returncode}) before writing {path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"bumpline sim wrote no line configuration in {timeout_s:g} s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM a test's `bumpline sim` (it stops cleanly on it); SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
