"""Operator screen users and the pure page helpers: hashes, the user commands, SVG, ETA."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.store import CurveInfo, LotInfo, StepInfo, Store, StoreError, WaferInfo
from controller.web.users import Role, UserBook, check_password, hash_password
from controller.web.views import first_bump_solidus, judged, lot_progress, reflow_svg

BUMPLINE = [sys.executable, "-m", "controller.cli"]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_password_hash_is_salted_scrypt_and_checks_only_the_password() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$16384$8$1$") and first != second  # salted
    assert check_password("correct horse", first)
    assert not check_password("correct horsE", first)
    assert not check_password("correct horse", "md5$whatever")


def test_the_user_book_keeps_roles_and_disables_instead_of_deleting(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'u.db'}") as store:
        book = UserBook(store)
        book.add("erik", Role.ENGINEER, "engineer-pass-1")
        with pytest.raises(StoreError, match="already exists"):
            book.add("erik", Role.ADMIN, "another-pass-1")
        with pytest.raises(StoreError, match="user name"):
            book.add("Robert'); DROP", Role.ADMIN, "another-pass-1")
        assert book.verify("erik", "engineer-pass-1").role is Role.ENGINEER
        assert book.verify("erik", "wrong") is None and book.verify("nobody", "x") is None
        book.set_disabled("erik")
        assert book.verify("erik", "engineer-pass-1") is None
        assert [u.name for u in book.list()] == ["erik"]


def test_user_commands_have_no_default_account_and_one_line_errors(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'u.db'}"]

    def bumpline(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*BUMPLINE, *args, *db], input=stdin, text=True,
                              capture_output=True, cwd=tmp_path)

    typo = bumpline("user", "list")  # no database there yet: refused, none made
    assert typo.returncode == 1 and typo.stderr.count("\n") == 1
    assert "no database at" in typo.stderr and not (tmp_path / "u.db").exists()
    added = bumpline("user", "add", "ada", "--role", "admin", "--password-stdin",
                     stdin="admin-pass-123\n")
    assert added.returncode == 0 and "ada added as admin" in added.stdout
    assert "ada" in bumpline("user", "list").stdout
    short = bumpline("user", "passwd", "ada", "--password-stdin", stdin="short\n")
    assert short.returncode == 1
    assert short.stderr.strip() == "bumpline: a password needs at least 10 characters"
    no_tty = bumpline("user", "add", "bob", "--role", "operator")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    assert bumpline("user", "disable", "ada").returncode == 0
    assert "disabled" in bumpline("user", "list").stdout
    web = bumpline("web", "--web", "nonsense")
    assert web.returncode == 2 and web.stderr.count("\n") == 1 and "HOST:PORT" in web.stderr


def _lot(state: str, started: datetime | None) -> LotInfo:
    return LotInfo("L1", "ballmount-sac305", "1", "0" * 64, 5, state, "olga", T0, started,
                   None, 4)


def _wafer(slot: int, outcome: str | None) -> WaferInfo:
    return WaferInfo(f"L1-0{slot}", "L1", slot, "complete" if outcome else "queued", "home",
                     outcome, T0)


def test_lot_progress_estimates_the_rest_from_the_pace_so_far() -> None:
    wafers = [_wafer(1, "good"), _wafer(2, "scrapped"), _wafer(3, None), _wafer(4, None)]
    progress = lot_progress(_lot("running", T0), wafers, now=T0 + timedelta(minutes=20))
    assert (progress.done, progress.total, progress.percent) == (2, 4, 50)
    assert progress.eta == "20 min"
    assert lot_progress(_lot("queued", None), wafers).eta == ""


def test_wafers_waiting_for_a_person_are_not_counted_down_and_a_stopped_lot_has_no_eta(
) -> None:
    """A wafer held or awaiting a disposition waits for a person, not the line: an ETA that
    counted it down read "9 min", then "10 min", for a lot nothing could finish. A running
    lot no controller runs is shown as `bumpline lot list` shows it: stopped, no ETA."""
    later = T0 + timedelta(minutes=20)
    waiting = [_wafer(1, "good"), _wafer(2, "good"),
               replace(_wafer(3, None), state="awaiting_disposition"), _wafer(4, None)]
    progress = lot_progress(_lot("running", T0), waiting, now=later)
    assert progress.eta == "10 min (+1 waiting for a person)"
    only_people = [*waiting[:3], replace(_wafer(4, None), state="held")]
    assert lot_progress(_lot("running", T0), only_people, now=later).eta == "waits for a person"
    stopped = lot_progress(_lot("running", T0), waiting, now=later, stopped=True)
    assert (stopped.state, stopped.eta) == ("stopped", "")
    assert lot_progress(_lot("running", T0), waiting, now=later).state == "running"


def _reflow(samples: tuple[float, ...]) -> StepInfo:
    return StepInfo(1, "L1-01", 2, 1, "reflow", "oven-1", "done", None, {},
                    {"peak_c": [240.0, 255.0], "tal_s": [50.0, 100.0]},
                    {"peak_c": 262.0, "tal_s": 80.0}, T0, T0, 0.0, 300.0,
                    CurveInfo(1.0, 220.0, samples))


def test_reflow_curve_svg_has_the_window_liquidus_and_first_bump_solidus() -> None:
    step = _reflow((25.0, 150.0, 262.0, 180.0))
    solidus = first_bump_solidus("ballmount-sac305")
    assert solidus is not None and solidus[0].upper().startswith("SAC305")
    svg = reflow_svg(step, solidus)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'class="window"' in svg and "liquidus 220 °C" in svg
    assert f"solidus {solidus[1]:g} °C" in svg and "peak 262.0 °C" in svg
    assert svg.count("<polyline") == 1
    rows = {name: (window, inside) for name, _, window, inside in judged(step)}
    assert rows["peak_c"] == ("240 … 255", False) and rows["tal_s"][1] is True
    assert reflow_svg(_reflow(()), solidus) == ""
    assert first_bump_solidus("no-such-recipe") is None
    assert "(assumed)" not in svg  # SAC305's solidus has a source


def test_an_assumed_first_bump_solidus_says_so() -> None:
    # process-data.md: Pb95Sn5's solidus is "commonly quoted, unverified"
    solidus = first_bump_solidus("rebump-hipb-snpb")
    assert solidus == ("Pb95Sn5", 308.0, True)
    svg = reflow_svg(_reflow((25.0, 150.0, 230.0, 180.0)), solidus)
    assert "first bump Pb95Sn5 solidus 308 °C (assumed)" in svg
