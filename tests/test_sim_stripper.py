"""FC-2 cleaner/stripper model: register-level conformance to flux-cleaner-fc2.md (on top
of flux-cleaner.md) and the strip's process sanity."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sim.cleaner import CleanerModel, CleanerState
from sim.modbus_map import Refusal, Table, text_to_registers
from sim.stripper import (
    STRIPPER_LIFE_WAFERS,
    StripperModel,
    cleaner_model,
    mask_left_pct,
    strip_rate,
)

H, IR, D = Table.HOLDING, Table.INPUT, Table.DISCRETE_INPUTS
LOAD, START, UNLOAD, CLEAR, ABORT = 1, 2, 3, 4, 5
CLEAN, STRIP = 1, 2
S = CleanerState


class Host:
    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.tool = StripperModel(seed=seed)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def hr(self, address: int, words: list[int]) -> None:
        self.tool.write(H, address, words, self.now)

    def cmd(self, code: int) -> None:
        self.hr(5, [code])

    def ir(self, address: int, count: int = 1) -> list[int]:
        return self.tool.read(IR, address, count, self.now)

    def state(self) -> CleanerState:
        return S(self.ir(0)[0])

    def refused(self, code: int, action: Callable[[], object]) -> Refusal:
        with pytest.raises(Refusal) as info:
            action()
        assert info.value.code == code, info.value
        return info.value

    def wait_until(self, condition: Callable[[], bool], limit_s: float) -> None:
        end = self.now + limit_s
        while not condition():
            assert self.now < end, f"not reached within {limit_s} s"
            self.advance(1.0)

    def load(self, mode: int, wafer_id: str = "W1") -> None:
        self.hr(6, [mode])
        self.hr(10, text_to_registers(wafer_id, 8))
        self.cmd(LOAD)

    def run(self, mode: int, wafer_id: str = "W1") -> tuple[int, float, float]:
        """LOAD in ``mode``, START, wait for DONE, UNLOAD: (status, ionic, mask %)."""
        self.load(mode, wafer_id)
        self.cmd(START)
        self.wait_until(lambda: self.state() is S.DONE, 5000)
        status, ionic, mask = self.ir(6)[0], self.ir(5)[0] / 100, self.ir(8)[0] / 10
        self.cmd(UNLOAD)
        return status, ionic, mask


def test_power_up_adds_the_fc2_registers_to_the_fc1_map() -> None:
    h = Host()
    assert h.state() is S.READY
    # MODE FLUX_CLEAN, strip 50.0 C for 600 s after the FC-1's five recipe registers.
    assert h.tool.read(H, 0, 9, 0) == [600, 120, 60, 60, 25, 0, CLEAN, 500, 600]
    assert h.ir(7, 3) == [500, 0, 0]  # strip tank at 50.0 C, no mask residue, no wafer
    assert h.tool.read(D, 0, 5, 0) == [False] * 5


def test_the_fc1_has_none_of_them() -> None:
    fc1 = CleanerModel()
    for table, address in ((H, 6), (IR, 7), (D, 4)):
        with pytest.raises(Refusal) as info:
            fc1.read(table, address, 1, 0)
        assert info.value.code == 2
    assert cleaner_model("fc-1") is CleanerModel and cleaner_model("FC-2") is StripperModel
    with pytest.raises(ValueError, match="known: FC-1, FC-2"):
        cleaner_model("FC-3")


def test_mode_is_read_at_load_and_writable_only_idle_or_ready() -> None:
    h = Host()
    h.refused(3, lambda: h.hr(6, [3]))
    h.load(STRIP)
    assert h.ir(9) == [STRIP]
    assert "MODE" in h.refused(6, lambda: h.hr(6, [CLEAN])).reason
    # One request writing MODE with the recipe is refused whole.
    h.refused(6, lambda: h.hr(6, [CLEAN, 550, 900]))
    assert h.tool.read(H, 6, 3, h.now) == [STRIP, 500, 600]
    h.cmd(START)
    assert h.state() is S.STRIPPING
    h.wait_until(lambda: h.state() is S.DONE, 2000)
    assert h.ir(9) == [STRIP]  # still the loaded wafer's mode
    h.cmd(UNLOAD)
    assert h.ir(9) == [0]
    h.hr(6, [CLEAN])  # READY again: allowed


def test_strip_cycle_and_its_result() -> None:
    h = Host()
    h.hr(2, [30, 30])  # rinse 30 s, dry 30 s
    h.load(STRIP)
    h.cmd(START)
    assert h.ir(3) == [600 + 30 + 30]  # REMAINING_S: strip, rinse, dry
    seen = set()
    while h.state() is not S.DONE:
        seen.add(h.state())
        h.advance(1.0)
    assert seen == {S.STRIPPING, S.RINSING, S.DRYING}
    assert h.ir(6) == [1]  # OK
    assert h.ir(8) == [0]  # dry film at 50 C for 600 s: no mask left (spec)
    assert 0 < h.ir(5)[0] / 100 < 1.0  # the strip removed the flux too


def test_mask_residue_appears_with_half_the_time_or_ten_degrees_less() -> None:
    assert mask_left_pct(600 * strip_rate(50.0)) < 0.05  # shows as 0 in 0.1 % steps
    assert mask_left_pct(300 * strip_rate(50.0)) > 1.0
    assert mask_left_pct(600 * strip_rate(40.0)) > 1.0
    h = Host()
    h.hr(8, [300])
    assert h.run(STRIP)[2] > 1.0
    h.hr(7, [400, 600])  # 40.0 C: wait for the tank to cool
    h.wait_until(lambda: h.ir(7) == [400], 1100)
    status, _, mask = h.run(STRIP, "W2")
    assert status == 1 and mask > 1.0


def test_a_flux_clean_on_the_fc2_reports_no_mask_residue() -> None:
    h = Host()
    status, ionic, mask = h.run(CLEAN)
    assert (status, mask) == (1, 0.0) and 0 < ionic < 1.0
    assert h.ir(9) == [0]


def test_strip_tank_heats_and_cools_independently_of_the_bath() -> None:
    h = Host()
    h.hr(7, [600])
    h.advance(100)
    assert h.tool.strip_tank_c(h.now) == pytest.approx(55.0)  # 0.05 C/s
    assert h.tool.bath_c(h.now) == pytest.approx(60.0)
    h.hr(7, [500])
    h.advance(100)
    assert h.tool.strip_tank_c(h.now) == pytest.approx(54.0)  # 0.01 C/s


def test_start_checks_the_tank_of_the_loaded_mode() -> None:
    h = Host()
    h.hr(0, [800])  # the wash bath far off: a strip does not care
    h.hr(6, [STRIP])
    assert h.state() is S.READY  # READY follows the tank MODE would use
    h.load(STRIP)
    h.cmd(START)
    assert h.state() is S.STRIPPING
    h.refused(6, lambda: h.cmd(ABORT))
    h.wait_until(lambda: h.state() is S.DONE, 800)
    h.cmd(UNLOAD)
    h.hr(7, [700])  # strip tank now far off
    assert h.state() is S.IDLE
    h.load(STRIP)
    assert "strip tank" in h.refused(6, lambda: h.cmd(START)).reason


def test_abort_is_refused_while_stripping_and_taken_while_rinsing() -> None:
    """flux-cleaner.md's ABORT row lists WASHING, RINSING, DRYING; the FC-2 page keeps the
    FC-1's COMMAND codes and adds no state to it: 06 while STRIPPING, nothing changed."""
    h = Host()
    h.hr(2, [30, 30])  # rinse 30 s, dry 30 s
    h.hr(8, [60])  # strip 60 s
    h.load(STRIP)
    h.cmd(START)
    h.advance(10)
    assert h.state() is S.STRIPPING
    assert "STRIPPING" in h.refused(6, lambda: h.cmd(ABORT)).reason
    assert h.state() is S.STRIPPING and h.ir(3) == [110]  # the cycle runs on
    assert h.ir(6) == [0]  # no result written
    h.wait_until(lambda: h.state() is S.RINSING, 60)
    h.cmd(ABORT)
    assert h.state() is S.DONE and h.ir(6) == [2]  # ABORTED
    assert h.tool.read(H, 5, 1, h.now) == [0]


def test_stripper_life_raises_650_before_a_strip_start_only() -> None:
    h = Host()
    h.hr(2, [10, 10])
    h.hr(8, [60])
    for n in range(STRIPPER_LIFE_WAFERS):
        assert h.run(STRIP, f"S{n}")[0] == 1
    assert h.tool.read(D, 4, 1, h.now) == [True]  # STRIPPER_LOW
    assert h.run(CLEAN, "C1")[0] == 1  # the saponifier is another chemistry
    h.load(STRIP, "S301")
    h.refused(6, lambda: h.cmd(START))
    assert h.ir(4) == [650]
    h.refused(6, lambda: h.cmd(CLEAR))  # cause still there
    h.tool.replenish_stripper(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.LOADED
    h.cmd(START)
    assert h.state() is S.STRIPPING


def test_strip_tank_astray_while_stripping_raises_660() -> None:
    h = Host()
    h.hr(8, [1800])
    h.load(STRIP)
    h.cmd(START)
    h.tool.fail_strip_heater(h.now)
    h.wait_until(lambda: h.state() is S.ALARM, 1000)  # 5 C at 0.01 C/s
    assert h.ir(4) == [660] and h.ir(6) == [3]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.tool.repair_strip_heater(h.now)
    h.wait_until(lambda: abs(h.tool.strip_tank_c(h.now) - 50.0) <= 5.0, 200)
    h.cmd(CLEAR)
    assert h.state() is S.DONE


def test_the_same_whether_polled_every_second_or_not_at_all_in_between() -> None:
    """A strip and a clean read the same when nobody asks during them (their quiet
    stretches run in one go), the strip tank heating first and going astray mid-strip."""

    def run(poll_s: float) -> list[object]:
        h = Host(4)
        seen: list[object] = []

        def until(t: float) -> None:
            while h.now < t:
                h.advance(min(poll_s, t - h.now))
                h.ir(0, 10)
            seen.extend([h.ir(0, 10), h.ir(10, 8), h.tool.read(D, 0, 5, h.now),
                         h.tool.drain_events()])

        h.hr(7, [550, 300])  # 55.0 C: the tank heats 100 s
        h.load(STRIP)
        until(120)
        h.cmd(START)
        until(700)
        h.cmd(UNLOAD)
        h.load(CLEAN, "W2")
        h.cmd(START)
        until(1000)
        h.cmd(UNLOAD)
        h.hr(8, [600])
        h.load(STRIP, "W3")
        h.cmd(START)
        until(1050)
        h.tool.fail_strip_heater(h.now)  # 0.01 C/s: 660 once 5 C off, 500 s later
        until(1800)
        return seen

    stepped, skipped = run(1.0), run(1000.0)
    assert stepped == skipped
    events = [text for batch in stepped if isinstance(batch, list) and batch
              and isinstance(batch[0], tuple) for _, text in batch]
    assert sum(" ended OK" in text for text in events) == 2
    assert any(text.startswith("alarm 660") for text in events)
