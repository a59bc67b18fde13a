"""`bumpline serve --gem` and `bumpline gem ...`: the equipment next to the controller,
the operator's control-state switch through the database, one-line errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from controller.cli import main
from controller.errors import UserError
from controller.gem.service import apply_operator_request, gem_service
from controller.gem.states import ControlState
from controller.store import Store
from tests.gem_host import GemLine

BUMPLINE = [sys.executable, "-m", "controller.cli"]
LINE_FILE = """
[line]
name = "gem-line"
time_scale = 100.0

[tools.oven-1]
role = "oven"
transport = "modbus-tcp"
host = "127.0.0.1"
port = 1

[gem]
port = {port}
host = "127.0.0.1"
model_name = "BL-SERVE"
"""


async def test_operator_switches_recorded_by_the_cli_are_carried_out(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'gem.db'}"
    line = GemLine(db)
    eq = await line.start()
    try:
        assert main(["gem", "control", "remote", "--db", db, "--user", "ann"]) == 0
        assert await apply_operator_request(eq) == "remote (ann): control state equipment-offline"
        assert eq.control.remote is True
        assert main(["gem", "control", "local", "--db", db, "--user", "ann"]) == 0
        await apply_operator_request(eq)
        assert eq.control.remote is False
        assert await apply_operator_request(eq) is None  # each request carried out once
        assert main(["gem", "control", "online", "--db", db, "--user", "bob"]) == 0
        outcome = await apply_operator_request(eq)  # no host: the attempt fails, and says so
        assert outcome.startswith("online (bob): refused: host did not answer S1F1")
        assert eq.control.state is ControlState.EQUIPMENT_OFFLINE
        audit = [a.detail for a in line.store.audit_log() if a.action == "gem.control"]
        assert audit[-1].startswith("online by bob: refused")
        capsys.readouterr()
        assert main(["gem", "status", "--db", db]) == 0
        out = capsys.readouterr().out
        assert "control state   equipment-offline (switch: local)" in out
        assert "spool           0 message(s)" in out
    finally:
        await line.close()


async def test_gem_service_starts_and_stops_with_serve(tmp_path, capsys):
    line_file = tmp_path / "line.toml"
    line_file.write_text(LINE_FILE.format(port=0), encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'gem.db'}")
    try:
        async with gem_service(Namespace(gem=False, line=str(line_file)), store) as events:
            assert events is None  # off unless asked
        async with gem_service(Namespace(gem=True, line=str(line_file)), store) as events:
            assert events.line == "gem-line"
        assert "GEM: BL-SERVE listening for the host on port" in capsys.readouterr().out
    finally:
        store.close()


async def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line_file = tmp_path / "line.toml"
        line_file.write_text(LINE_FILE.format(port=port), encoding="utf-8")
        store = Store(f"sqlite:///{tmp_path / 'gem.db'}")
        try:
            with pytest.raises(UserError, match=f"GEM cannot listen on 127.0.0.1:{port}"):
                async with gem_service(Namespace(gem=True, line=str(line_file)), store):
                    pass
        finally:
            store.close()


def test_serve_gem_once_starts_the_host_link_and_leaves_cleanly(tmp_path: Path) -> None:
    line_file = tmp_path / "line.toml"
    line_file.write_text(LINE_FILE.format(port=0), encoding="utf-8")
    out = subprocess.run(
        [*BUMPLINE, "serve", "--once", "--gem", "--line", str(line_file),
         "--db", f"sqlite:///{tmp_path / 'line.db'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "GEM: BL-SERVE listening for the host" in out.stdout
    assert "Traceback" not in out.stderr


def test_a_bad_gem_section_is_one_line(tmp_path: Path) -> None:
    line_file = tmp_path / "line.toml"
    line_file.write_text(LINE_FILE.format(port=0) + "t3 = -1\n", encoding="utf-8")
    out = subprocess.run(
        [*BUMPLINE, "serve", "--once", "--gem", "--line", str(line_file),
         "--db", f"sqlite:///{tmp_path / 'line.db'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "gem.t3: expected seconds 1-120, got -1" in out.stderr


def test_the_operators_switch_goes_to_the_line_it_names(tmp_path, capsys):
    """Lines sharing a database each have a host link: `gem control` and `gem status` are
    one line's. Without --line, the database's one GEM line; with two, a one-line error
    naming them."""
    from controller.gem.spool import GemDatabase

    db = f"sqlite:///{tmp_path / 'gem.db'}"
    with Store(db) as store:
        GemDatabase(store.engine, line_id="bay-A").save("control", {"state": 1, "remote": True})
    assert main(["gem", "control", "local", "--db", db, "--user", "ann"]) == 0  # the one line
    assert "requested for line bay-A" in capsys.readouterr().out
    with Store(db) as store:
        GemDatabase(store.engine, line_id="bay-B").save("control", {"state": 1, "remote": True})
    assert main(["gem", "control", "online", "--db", db]) == 2  # usage: one line, no trace
    assert "name the line with --line ID (the lines with GEM records here: 'bay-A', 'bay-B')" \
        in capsys.readouterr().err
    assert main(["gem", "control", "online", "--db", db, "--line", "bay-B", "--user", "bob"]) == 0
    with Store(db) as store:
        a, b = (GemDatabase(store.engine, line_id=line) for line in ("bay-A", "bay-B"))
        assert a.load("operator_request")["action"] == "local"
        assert b.load("operator_request")["action"] == "online"
    capsys.readouterr()
    assert main(["gem", "status", "--db", db, "--line", "bay-B"]) == 0
    assert "line            bay-B" in capsys.readouterr().out
