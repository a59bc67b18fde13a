"""FC-1 cleaner model: register-level conformance to flux-cleaner.md and process sanity."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sim.cleaner import CHEMISTRY_LIFE_CYCLES, CleanerModel, CleanerState, residue_left, wash_rate
from sim.faults import parse_tool_faults
from sim.modbus_map import Refusal, Table, registers_to_text, text_to_registers, u32_words
from sim.stripper import StripperModel

H, IR, D = Table.HOLDING, Table.INPUT, Table.DISCRETE_INPUTS
LOAD, START, UNLOAD, CLEAR, ABORT = 1, 2, 3, 4, 5
S = CleanerState


class Host:
    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.cleaner = CleanerModel(seed=seed)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def hr(self, address: int, words: list[int]) -> None:
        self.cleaner.write(H, address, words, self.now)

    def cmd(self, code: int) -> None:
        self.hr(5, [code])

    def ir(self, address: int, count: int = 1) -> list[int]:
        return self.cleaner.read(IR, address, count, self.now)

    def di(self) -> list[bool]:
        return self.cleaner.read(D, 0, 4, self.now)

    def state(self) -> CleanerState:
        return S(self.ir(0)[0])

    def refused(self, code: int, action: Callable[[], object]) -> Refusal:
        with pytest.raises(Refusal) as info:
            action()
        assert info.value.code == code, info.value
        return info.value

    def wait_until(self, condition: Callable[[], bool], limit_s: float) -> float:
        end = self.now + limit_s
        while not condition():
            assert self.now < end, f"not reached within {limit_s} s"
            self.advance(1.0)
        return self.now

    def recipe(self, temp: int = 600, wash: int = 120, rinse: int = 60, dry: int = 60,
               pressure: int = 25) -> None:
        self.hr(0, [temp, wash, rinse, dry, pressure])

    def load(self, wafer_id: str = "W1") -> None:
        self.hr(10, text_to_registers(wafer_id, 8))
        self.cmd(LOAD)

    def clean(self, wafer_id: str = "W1") -> tuple[int, float]:
        """LOAD, START, wait for DONE, UNLOAD; returns (status, residue ug/cm2)."""
        self.load(wafer_id)
        self.cmd(START)
        self.wait_until(lambda: self.state() is S.DONE, 3000)
        status, ionic = self.ir(6)[0], self.ir(5)[0] / 100
        self.cmd(UNLOAD)
        return status, ionic


def test_power_up_is_ready_at_the_default_recipe() -> None:
    h = Host()
    assert h.state() is S.READY
    assert h.cleaner.read(H, 0, 6, 0) == [600, 120, 60, 60, 25, 0]
    assert h.ir(1) == [600]  # bath already at 60.0 C
    assert 140 <= h.ir(2)[0] <= 160  # rinse water near 15 MOhm.cm
    assert h.ir(3, 4) == [0, 0, 0, 0]  # remaining, alarm, result ionic, result status
    assert h.ir(20, 2) == [0, 0]
    assert h.di() == [False, False, False, False]


@pytest.mark.parametrize(("table", "address", "count"),
                         [(H, 6, 1), (H, 9, 2), (H, 18, 1), (H, 4, 3), (IR, 7, 1), (IR, 18, 2),
                          (IR, 22, 1), (IR, 5, 3), (D, 4, 1), (D, 3, 2)])
def test_addresses_outside_the_map_are_exception_02(table: Table, address: int, count: int) -> None:
    h = Host()
    h.refused(2, lambda: h.cleaner.read(table, address, count, 0))
    if table is H:
        h.refused(2, lambda: h.cleaner.write(table, address, [1] * count, 0))


def test_the_cleaner_has_no_coils() -> None:
    h = Host()
    h.refused(1, lambda: h.cleaner.read(Table.COILS, 0, 1, 0))
    h.refused(1, lambda: h.cleaner.write(Table.COILS, 0, [True], 0))
    assert h.cleaner.function_codes == {2, 3, 4, 6, 16}


def test_out_of_range_write_is_03_and_writes_nothing() -> None:
    h = Host()
    for address, bad in [(0, 299), (0, 801), (1, 9), (2, 901), (3, 0), (4, 4), (4, 61)]:
        h.refused(3, lambda a=address, w=bad: h.hr(a, [w]))
    h.refused(3, lambda: h.hr(0, [700, 200, 60, 60, 99]))
    assert h.cleaner.read(H, 0, 5, 0) == [600, 120, 60, 60, 25]
    for code in (0, 6, 1000):
        h.refused(3, lambda c=code: h.cmd(c))
    assert h.cleaner.read(H, 5, 1, 0) == [0]


def test_text_and_32_bit_encodings() -> None:
    assert u32_words(70_000) == [1, 4464]  # high word first
    h = Host()
    h.hr(10, text_to_registers("LOT9-W03", 8))
    assert h.cleaner.read(H, 10, 8, 0)[:2] == [0x4C4F, 0x5439]
    h.refused(3, lambda: h.hr(10, [0x0A41]))  # control character
    h.clean("LOT9-W03")
    assert registers_to_text(h.ir(10, 8)) == "LOT9-W03"
    h.clean("LOT9-W04")
    assert h.ir(20, 2) == [0, 2]


def test_cycle_phases_timing_and_result() -> None:
    h = Host()
    h.recipe(wash=100, rinse=40, dry=30)
    h.refused(6, lambda: h.cmd(START))  # nothing loaded
    h.load("W7")
    assert h.state() is S.LOADED and h.di()[0]
    h.refused(6, lambda: h.cmd(LOAD))
    h.cmd(START)
    started = h.now
    assert h.state() is S.WASHING and h.ir(3) == [170]
    assert h.wait_until(lambda: h.state() is S.RINSING, 500) - started == 100
    assert h.ir(3) == [70]
    assert h.wait_until(lambda: h.state() is S.DRYING, 500) - started == 140
    assert h.wait_until(lambda: h.state() is S.DONE, 500) - started == 170
    assert h.ir(3) == [0] and h.ir(6) == [1] and h.ir(20, 2) == [0, 1]
    assert registers_to_text(h.ir(10, 8)) == "W7"
    h.cmd(UNLOAD)
    assert h.state() is S.READY and not h.di()[0]
    assert h.ir(6) == [1]  # the last result stays after UNLOAD


def test_recipe_and_command_in_one_write() -> None:
    h = Host()
    h.load()
    h.refused(6, lambda: h.hr(0, [700, 30, 30, 30, 25, START]))  # bath not at 70 C
    assert h.cleaner.read(H, 0, 6, 0) == [600, 120, 60, 60, 25, 0]  # nothing kept
    h.refused(3, lambda: h.hr(0, [600, 30, 30, 30, 25, 7]))
    h.hr(0, [600, 30, 20, 10, 25, START])
    assert h.state() is S.WASHING and h.ir(3) == [60]


def test_start_needs_the_bath_at_temperature() -> None:
    h = Host()
    h.recipe(temp=700)
    assert h.state() is S.IDLE  # bath off temperature
    h.load()
    h.refused(6, lambda: h.cmd(START))
    heated = h.wait_until(lambda: h.ir(1)[0] >= 690, 1000)
    assert 175 <= heated <= 185  # 9 C at 0.05 C/s
    h.cmd(START)


def test_bath_cools_slowly_and_unload_goes_idle_when_off_temperature() -> None:
    h = Host()
    h.load()
    h.cmd(START)
    h.hr(0, [500])  # operator lowers the setpoint during the cycle
    h.wait_until(lambda: h.state() is S.DONE, 1000)
    assert h.cleaner.bath_c(h.now) == pytest.approx(60.0 - 0.01 * 240, abs=0.05)
    h.cmd(UNLOAD)
    assert h.state() is S.IDLE


def test_residue_falls_with_wash_temperature_and_time() -> None:
    def residue(temp: int, wash: int) -> float:
        h = Host()
        h.recipe(temp=temp, wash=wash)
        h.wait_until(lambda: h.state() is S.READY, 2000)
        status, ionic = h.clean()
        assert status == 1
        return ionic

    normal = residue(600, 120)
    assert normal < 1.0
    assert residue(400, 120) > 1.56 > normal  # cool wash fails the legacy limit
    assert residue(600, 30) > normal
    assert residue(700, 120) < normal
    assert residue_left(wash_rate(60.0, 2.5) * 120) == pytest.approx(0.30, abs=0.01)


def test_abort_ends_the_cycle_with_status_2() -> None:
    h = Host()
    h.load()
    h.refused(6, lambda: h.cmd(ABORT))
    h.cmd(START)
    h.advance(30)
    h.cmd(ABORT)
    assert h.state() is S.DONE and h.ir(6) == [2]
    assert h.ir(5)[0] / 100 > 1.0  # only 30 s of wash
    h.refused(6, lambda: h.cmd(ABORT))
    h.cmd(UNLOAD)


def test_low_di_resistivity_raises_630_before_the_next_start() -> None:
    h = Host()
    h.cleaner.contaminate_di(h.now, 8.0)
    h.advance(1)
    assert h.di()[2] and h.ir(2)[0] < 100
    h.load()
    h.refused(6, lambda: h.cmd(START))
    assert h.state() is S.ALARM and h.ir(4) == [630]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.cleaner.restore_di(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.LOADED
    h.cmd(START)


def test_a_fault_plan_spoils_the_di_water_and_restores_it() -> None:
    """``di=T-U``: DI_RESISTIVITY_LOW from T to U (the rinse resistivity below 10 MOhm.cm),
    and no alarm while no START comes (flux-cleaner.md: 630 "before the next START")."""
    h = Host()
    h.cleaner.apply_fault_plan(parse_tool_faults("di=100-300"))
    h.advance(99)
    assert not h.di()[2]
    h.advance(2)
    assert h.di()[2] and h.ir(2)[0] < 100 and h.state() is S.READY
    h.advance(198)
    assert h.di()[2] and h.ir(4) == [0]
    h.advance(2)
    assert not h.di()[2] and h.ir(2)[0] > 140


def test_chemistry_lasts_500_cycles_then_640_until_replenished() -> None:
    h = Host()
    h.recipe(wash=10, rinse=10, dry=10)
    for n in range(CHEMISTRY_LIFE_CYCLES):
        assert h.clean(f"W{n}")[0] == 1
    assert h.di()[1]  # CHEMISTRY_LOW
    assert h.ir(20, 2) == [0, 500]
    h.load()
    h.refused(6, lambda: h.cmd(START))
    assert h.ir(4) == [640]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.cleaner.replenish_chemistry(h.now)
    h.cmd(CLEAR)
    assert not h.di()[1]
    h.cmd(START)


def test_chemistry_alarm_at_end_latches_640_as_the_500th_cycle_ends() -> None:
    """flux-cleaner.md: "Chemistry lasts 500 cycles; then 640 until replenished" (not "before
    the next START", as for 630). chemistry_alarm_at="end": the 500th cycle finishes (its
    result OK) and 640 latches at once; CLEAR after replenishing leaves the wafer DONE."""
    h = Host()
    h.cleaner = CleanerModel(chemistry_alarm_at="end")
    h.recipe(wash=10, rinse=10, dry=10)
    for n in range(CHEMISTRY_LIFE_CYCLES - 1):
        assert h.clean(f"W{n}")[0] == 1
    assert h.state() is S.READY and h.ir(4) == [0]
    h.load("LAST")
    h.cmd(START)
    h.advance(29)
    assert h.state() is S.DRYING and h.ir(4) == [0]
    h.advance(1)
    assert h.state() is S.ALARM and h.ir(4) == [640]
    assert h.ir(6) == [1] and registers_to_text(h.ir(10, 8)) == "LAST"  # cleaned: OK
    assert h.di()[:2] == [True, True]  # WAFER_PRESENT, CHEMISTRY_LOW
    assert h.ir(20, 2) == [0, 500]
    h.refused(6, lambda: h.cmd(UNLOAD))
    h.refused(6, lambda: h.cmd(CLEAR))  # until replenished
    h.cleaner.replenish_chemistry(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.DONE and h.ir(6) == [1]
    h.cmd(UNLOAD)
    assert h.clean("NEXT")[0] == 1


def test_chemistry_alarm_at_end_also_after_an_aborted_500th_cycle() -> None:
    h = Host()
    h.cleaner = CleanerModel(chemistry_alarm_at="end")
    h.recipe(wash=10, rinse=10, dry=10)
    for n in range(CHEMISTRY_LIFE_CYCLES - 1):
        h.clean(f"W{n}")
    h.load()
    h.cmd(START)  # the 500th: aborted cycles used chemistry too
    h.advance(5)
    h.cmd(ABORT)
    assert h.state() is S.ALARM and h.ir(4) == [640] and h.ir(6) == [2]
    h.cleaner.replenish_chemistry(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.DONE


def test_chemistry_alarm_at_is_start_or_end() -> None:
    assert CleanerModel().chemistry_alarm_at == "start"
    with pytest.raises(ValueError, match="chemistry_alarm_at"):
        CleanerModel(chemistry_alarm_at="now")
    assert StripperModel(chemistry_alarm_at="end").chemistry_alarm_at == "end"  # the FC-2 too


def test_door_open_during_a_cycle_is_400_and_ends_it_with_status_3() -> None:
    h = Host()
    h.load()
    h.cmd(START)
    h.advance(50)
    h.cleaner.open_door(h.now)
    assert h.state() is S.ALARM and h.ir(4) == [400] and h.di()[3]
    assert h.ir(6) == [3]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.cleaner.close_door(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.DONE
    h.cmd(UNLOAD)


def test_spray_pressure_low_is_620() -> None:
    h = Host()
    h.cleaner.lose_spray_pressure(h.now)
    h.load()
    h.cmd(START)
    h.advance(1)
    assert h.ir(4) == [620] and h.ir(6) == [3]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.cleaner.restore_spray_pressure(h.now)
    h.cmd(CLEAR)
    assert h.state() is S.DONE


def test_bath_heater_failure_during_a_long_wash_is_610() -> None:
    h = Host()
    h.recipe(wash=900)
    h.load()
    h.cmd(START)
    h.cleaner.fail_bath_heater(h.now)
    failed = h.wait_until(lambda: h.ir(4) == [610], 900)
    assert 490 <= failed <= 510  # 5 C at 0.01 C/s
    h.refused(6, lambda: h.cmd(CLEAR))
    h.cleaner.repair_bath_heater(h.now)
    h.wait_until(lambda: abs(h.cleaner.bath_c(h.now) - 60.0) <= 5.0, 200)
    h.cmd(CLEAR)
    assert h.state() is S.DONE and h.ir(6) == [3]


def test_scheduled_alarm_at_the_nth_wafer_and_door_by_time() -> None:
    h = Host()
    h.cleaner.schedule_alarm(620, at_wafer=2)
    h.clean("one")
    h.load("two")
    h.cmd(START)
    h.wait_until(lambda: h.state() is S.ALARM, 200)
    assert h.ir(4) == [620] and h.ir(6) == [3]
    h.cmd(CLEAR)  # momentary
    h.cmd(UNLOAD)
    h.cleaner.schedule_door(h.now + 10, h.now + 20)
    h.advance(10)
    assert h.ir(4) == [400]
    h.refused(6, lambda: h.cmd(CLEAR))
    h.advance(10)
    h.cmd(CLEAR)
    # flux-cleaner.md: CLEAR goes "back to LOADED / DONE / IDLE as fits the wafer"
    assert h.state() is S.IDLE  # the chamber is empty: IDLE, though the bath is in band
    h.advance(60)
    assert h.state() is S.IDLE
    h.load("three")  # LOAD is allowed in IDLE; after it the bath decides again
    assert h.state() is S.LOADED


def test_deterministic_under_a_seed() -> None:
    def run(seed: int) -> list[int]:
        h = Host(seed)
        h.clean()
        return h.ir(0, 7)

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_the_same_whether_polled_every_second_or_not_at_all_in_between() -> None:
    """Nobody asking during a cycle (its quiet stretches run in one go) changes nothing:
    the noise, the results, the events and their times; with a bath that has to heat, the
    spray failing mid-wash, a door opening mid-wash and an alarm planned for the fourth
    wafer."""

    def run(poll_s: float) -> list[object]:
        h = Host(3)
        h.cleaner.schedule_alarm(620, at_wafer=4)
        h.cleaner.schedule_door(1000.5, 1030)
        seen: list[object] = []

        def until(t: float) -> None:
            while h.now < t:
                h.advance(min(poll_s, t - h.now))
                h.ir(0, 7)
            seen.extend([h.ir(0, 7), h.ir(10, 8), h.ir(20, 2), h.di(),
                         h.cleaner.drain_events()])

        for n, (start, temp) in enumerate([(0, 600), (400, 650), (800, 650), (1200, 650)]):
            until(start)
            if h.state() is S.ALARM:
                h.cmd(CLEAR)
            if h.state() is S.DONE:
                h.cmd(UNLOAD)
            h.recipe(temp=temp)
            h.load(f"W{n + 1}")
            until(start + 120)  # the bath heats to 65 C in 100 s
            h.cmd(START)
            if n == 1:
                until(start + 150)
                h.cleaner.lose_spray_pressure(h.now)
                until(start + 200)
                h.cleaner.restore_spray_pressure(h.now)
        until(1700)
        return seen

    stepped, skipped = run(1.0), run(1000.0)
    assert stepped == skipped
    events = [text for batch in stepped if isinstance(batch, list) and batch
              and isinstance(batch[0], tuple) for _, text in batch]
    assert [text[:9] for text in events if text.startswith("alarm")] == ["alarm 620", "alarm 400",
                                                                         "alarm 620"]
    assert sum(" ended OK" in text for text in events) == 1
    assert sum(" ended ALARM" in text for text in events) == 3
