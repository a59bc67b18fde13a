"""RF-10N oven model: register-level conformance to reflow-oven.md and physics sanity.

Driven at the register level on a manual clock, exactly as a Modbus server drives it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sim.clock import ManualClock
from sim.modbus_map import Refusal, Table, registers_to_text, text_to_registers, to_s16
from sim.oven import OvenModel, OvenState

H, IR, D, C = Table.HOLDING, Table.INPUT, Table.DISCRETE_INPUTS, Table.COILS
APPLY, LOAD, UNLOAD, CLEAR, STANDBY = 1, 2, 3, 4, 5

# Setpoints in 0.1 C for zones 1-10 (8 heating zones, 2 cooling zones).
EUTECTIC = [1400, 1550, 1650, 1750, 1850, 2000, 2350, 2500, 1400, 600]
HIGH_LEAD = [1700, 2000, 2300, 2600, 2900, 3200, 3450, 3550, 2000, 800]
PASS_S_AT_600 = 400  # 4000 mm at 600 mm/min


class Host:
    """A host talking registers to the model."""

    def __init__(self, seed: int = 0, *, belt_counts_exit: bool = True) -> None:
        self.clock = ManualClock()
        self.oven = OvenModel(seed=seed, belt_counts_exit=belt_counts_exit)

    @property
    def now(self) -> float:
        return self.clock.now()

    def hr(self, address: int, words: list[int]) -> None:
        self.oven.write(H, address, words, self.now)

    def cmd(self, code: int) -> None:
        self.hr(20, [code])

    def ir(self, address: int, count: int = 1) -> list[int]:
        return self.oven.read(IR, address, count, self.now)

    def di(self, address: int) -> bool:
        return self.oven.read(D, address, 1, self.now)[0]

    def coil(self, address: int, on: bool) -> None:
        self.oven.write(C, address, [on], self.now)

    def state(self) -> OvenState:
        return OvenState(self.ir(10)[0])

    def refused(self, code: int, action: Callable[[], object]) -> Refusal:
        with pytest.raises(Refusal) as info:
            action()
        assert info.value.code == code, info.value
        return info.value

    def wait_until(self, condition: Callable[[], bool], limit_s: float) -> float:
        """Advance tool time 1 s at a time until ``condition`` holds; returns the time."""
        end = self.now + limit_s
        while not condition():
            assert self.now < end, f"not reached within {limit_s} s"
            self.clock.advance(1.0)
        return self.now

    def apply(self, setpoints: list[int], speed: int = 600, o2_limit: int = 100,
              tal: int = 1830, profile_id: int = 7) -> None:
        self.hr(0, setpoints + [speed, o2_limit, tal, profile_id])
        self.cmd(APPLY)

    def warm(self, setpoints: list[int] = EUTECTIC, **kw: int) -> None:
        self.apply(setpoints, **kw)
        self.coil(0, True)
        self.wait_until(lambda: self.state() is OvenState.READY, 1800)

    def load(self, wafer_id: str) -> None:
        self.hr(30, text_to_registers(wafer_id, 8))
        self.cmd(LOAD)

    def exit_result(self) -> dict[str, object]:
        r = self.ir(20, 7)
        n = self.ir(99)[0]
        curve = self.ir(100, min(n, 125)) + (self.ir(225, n - 125) if n > 125 else [])
        return {"peak": r[0] / 10, "tal": r[1] / 10, "ramp": r[2] / 100, "cool": r[3] / 100,
                "profile": r[4], "o2": r[5], "flags": r[6],
                "id": registers_to_text(self.ir(30, 8)), "curve": [v / 10 for v in curve]}

    def one_pass(self, wafer_id: str = "W1") -> dict[str, object]:
        self.load(wafer_id)
        self.wait_until(lambda: self.di(1), 3000)
        result = self.exit_result()
        self.cmd(UNLOAD)
        return result


# --- power-up and the register map ----------------------------------------------------------------


def test_power_up_state() -> None:
    h = Host()
    assert h.state() is OvenState.OFF
    assert h.oven.read(H, 0, 14, 0) == [0] * 10 + [600, 100, 1830, 0]
    assert h.ir(11, 4) == [0, 0, 65535, 0]  # no wafers, no alarm, O2 of air clipped, profile 0
    assert h.oven.read(C, 0, 2, 0) == [False, True]  # N2 off, conveyor on
    assert [h.di(a) for a in range(4)] == [True, False, True, False]


@pytest.mark.parametrize(
    ("table", "address", "count"),
    [(H, 14, 1), (H, 19, 1), (H, 21, 1), (H, 38, 1), (H, 12, 3), (H, 36, 3),
     (IR, 15, 1), (IR, 19, 2), (IR, 27, 1), (IR, 38, 1), (IR, 98, 1), (IR, 350, 1), (IR, 300, 51),
     (D, 4, 1), (D, 2, 3), (C, 2, 1), (C, 1, 2)],
)
def test_addresses_outside_the_map_are_exception_02(table: Table, address: int, count: int) -> None:
    h = Host()
    h.refused(2, lambda: h.oven.read(table, address, count, 0))
    if table in (H, C):
        h.refused(2, lambda: h.oven.write(table, address, [0] * count, 0))


def test_the_exit_block_reads_across_its_unlisted_registers_as_the_worked_example() -> None:
    # Step 4 of the spec's worked example reads IR 20-37 in one request: 27-29 read 0
    # inside such a read; a read that starts or ends in them is still 02.
    h = Host()
    words = h.ir(20, 18)
    assert len(words) == 18 and words[7:10] == [0, 0, 0]
    assert h.ir(26, 5)[1:4] == [0, 0, 0]
    for address, count in ((25, 3), (27, 4), (28, 1), (10, 28)):
        h.refused(2, lambda a=address, c=count: h.ir(a, c))


def test_out_of_range_write_is_exception_03_and_writes_nothing() -> None:
    h = Host()
    for address, bad in [(0, 4001), (9, 0xFFFF), (10, 199), (10, 1501), (11, 9), (11, 1001),
                         (12, 499), (12, 4001)]:
        h.refused(3, lambda a=address, w=bad: h.hr(a, [w]))
    good_then_bad = [2000] * 10 + [600, 100, 5000, 1]  # TAL_THRESHOLD out of range
    h.refused(3, lambda: h.hr(0, good_then_bad))
    assert h.oven.read(H, 0, 14, 0) == [0] * 10 + [600, 100, 1830, 0]
    h.hr(13, [65535])  # PROFILE_ID takes any 16-bit value
    assert h.oven.read(H, 13, 1, 0) == [65535]


def test_staged_values_take_effect_only_with_apply() -> None:
    h = Host()
    h.hr(0, EUTECTIC + [600, 100, 1830, 42])
    assert h.oven.read(H, 0, 14, 0) == EUTECTIC + [600, 100, 1830, 42]
    h.clock.advance(120)
    assert h.ir(14) == [0] and h.state() is OvenState.OFF
    assert max(h.oven.zone_air(h.now)) < 26.0  # nothing heats yet
    h.cmd(APPLY)
    assert h.ir(14) == [42] and h.state() is OvenState.HEATING
    h.clock.advance(120)
    assert h.oven.zone_air(h.now)[7] > 150.0  # zone 8 on its way to 250 C


def test_command_reads_back_zero_and_unknown_codes_are_03() -> None:
    h = Host()
    h.apply(EUTECTIC)
    assert h.oven.read(H, 20, 1, 0) == [0]
    for code in (0, 6, 99, 65535):
        h.refused(3, lambda c=code: h.cmd(c))


def test_commands_not_allowed_now_are_06() -> None:
    h = Host()
    h.refused(6, lambda: h.cmd(UNLOAD))  # no wafer at the exit
    h.refused(6, lambda: h.cmd(CLEAR))  # no alarm
    h.hr(30, text_to_registers("W1", 8))
    h.refused(6, lambda: h.cmd(LOAD))  # OFF
    h.apply(EUTECTIC)
    h.refused(6, lambda: h.cmd(LOAD))  # HEATING
    h.wait_until(lambda: h.state() is OvenState.READY, 1800)
    h.refused(6, lambda: h.cmd(LOAD))  # N2 purge off
    h.coil(0, True)
    h.cmd(LOAD)
    h.refused(6, lambda: h.cmd(LOAD))  # entrance not clear yet
    h.refused(6, lambda: h.cmd(APPLY))  # wafer on the belt
    h.refused(6, lambda: h.cmd(STANDBY))  # wafer on the belt
    h.oven.jam_conveyor(h.now)
    h.refused(6, lambda: h.cmd(CLEAR))  # cause still there
    h.oven.clear_jam(h.now)
    h.cmd(CLEAR)
    assert h.state() is OvenState.PROCESSING


def test_apply_refused_while_an_alarm_is_latched() -> None:
    h = Host()
    h.warm()
    h.oven.press_estop(h.now)
    h.refused(6, lambda: h.cmd(APPLY))
    h.oven.release_estop(h.now)
    h.cmd(CLEAR)
    h.cmd(APPLY)


def test_wafer_id_text_encoding() -> None:
    h = Host()
    h.hr(30, text_to_registers("LOT42-07", 8))
    words = h.oven.read(H, 30, 8, 0)
    assert words[:4] == [0x4C4F, 0x5434, 0x322D, 0x3037]  # "LO" "T4" "2-" "07", high byte first
    assert words[4:] == [0, 0, 0, 0]  # NUL padded
    h.refused(3, lambda: h.hr(30, [0x4CFF]))  # not ASCII
    h.hr(30, [0] * 8)
    h.warm()
    h.refused(3, lambda: h.cmd(LOAD))  # no wafer named


def test_temperatures_are_signed_tenths() -> None:
    assert to_s16(-5.0) == 0xFFCE
    assert to_s16(183.0) == 1830
    h = Host()
    h.apply(EUTECTIC)
    h.clock.advance(300)
    pv = h.ir(0, 10)
    air = h.oven.zone_air(h.now)
    for reading, true in zip(pv, air, strict=True):
        assert abs(reading / 10 - true) <= 0.25  # thermocouple noise stays small


def test_thermocouple_fault_reads_7fff_and_needs_repair_before_clear() -> None:
    h = Host()
    h.warm()
    h.oven.fail_thermocouple(3, h.now)
    assert h.ir(2) == [0x7FFF]
    assert h.ir(12) == [560] and h.state() is OvenState.ALARM and h.di(3)
    h.refused(6, lambda: h.cmd(CLEAR))
    h.oven.repair_thermocouple(3, h.now)
    h.cmd(CLEAR)
    assert h.ir(2) != [0x7FFF] and h.ir(12) == [0]
    with pytest.raises(ValueError, match="zone must be 1-10"):
        h.oven.fail_thermocouple(11, h.now)


# --- states and heating -------------------------------------------------------------------------


def test_ready_after_60_s_stable() -> None:
    h = Host()
    h.apply(EUTECTIC)
    stable_at = h.wait_until(lambda: h.di(2), 1800)
    assert h.state() is OvenState.HEATING
    h.clock.advance(59)
    assert h.state() is OvenState.HEATING
    h.clock.advance(1)
    assert h.state() is OvenState.READY
    assert h.now == stable_at + 60


def test_high_lead_to_eutectic_changeover_takes_15_to_25_minutes() -> None:
    h = Host()
    h.warm(HIGH_LEAD, tal=3020)
    start = h.now
    h.apply(EUTECTIC)
    assert h.state() is OvenState.HEATING
    ready = h.wait_until(lambda: h.state() is OvenState.READY, 3600)
    assert 15 * 60 <= ready - start <= 25 * 60


def test_standby_sets_every_zone_to_100_c() -> None:
    h = Host()
    h.warm()
    h.cmd(STANDBY)
    assert h.state() is OvenState.STANDBY
    h.clock.advance(3600)
    assert all(abs(t - 100.0) < 1.0 for t in h.oven.zone_air(h.now))
    # reflow-oven.md: "all zone setpoints to 100.0 °C": ZONE_SP (HR 0-9) reads them too...
    assert h.oven.read(H, 0, 14, h.now) == [1000] * 10 + [600, 100, 1830, 7]
    assert h.ir(14) == [7]  # ACTIVE_PROFILE_ID unchanged (the spec changes only setpoints)
    h.cmd(APPLY)  # ...so an APPLY without staging again keeps the zones at 100 °C
    assert h.state() is OvenState.HEATING
    h.clock.advance(600)
    assert all(abs(t - 100.0) < 1.0 for t in h.oven.zone_air(h.now))


# --- the belt and the profiler ----------------------------------------------------------------


def test_one_wafer_pass_timing_and_profile() -> None:
    h = Host()
    h.warm()
    h.load("LOT42-07")
    assert h.state() is OvenState.PROCESSING and h.ir(11) == [1]
    loaded = h.now
    clear_at = h.wait_until(lambda: h.di(0), 100)
    assert clear_at - loaded == 45  # 450 mm at 10 mm/s
    exit_at = h.wait_until(lambda: h.di(1), 1000)
    assert exit_at - loaded == PASS_S_AT_600
    r = h.exit_result()
    assert r["id"] == "LOT42-07" and r["profile"] == 7 and r["flags"] == 0
    assert 183.0 < r["peak"] < 250.0  # wafer lags: below the hottest setpoint
    assert 0.5 < r["ramp"] <= 3.0 and 0.5 < r["cool"] <= 6.0
    assert r["o2"] < 100
    assert len(r["curve"]) == PASS_S_AT_600 // 5 + 1  # every 5 s from LOAD, both ends
    assert r["curve"][0] == pytest.approx(25.0, abs=0.1)
    assert max(r["curve"]) <= r["peak"] + 0.05


def test_tal_is_consistent_with_the_curve() -> None:
    h = Host()
    h.warm()
    r = h.one_pass()
    curve, threshold = r["curve"], 183.0
    tal_from_curve = 0.0
    for a, b in zip(curve, curve[1:], strict=False):  # linear between 5 s samples
        if a > threshold and b > threshold:
            tal_from_curve += 5
        elif (a > threshold) != (b > threshold):
            hot, cold = max(a, b), min(a, b)
            tal_from_curve += 5 * (hot - threshold) / (hot - cold)
    assert r["tal"] > 30
    assert abs(r["tal"] - tal_from_curve) < 3.0


def test_peak_rises_with_setpoints_and_falls_with_conveyor_speed() -> None:
    def peak(setpoints: list[int], speed: int) -> float:
        h = Host()
        h.warm(setpoints, speed=speed)
        return h.one_pass()["peak"]

    hotter = [sp + 150 if i < 8 else sp for i, sp in enumerate(EUTECTIC)]
    base = peak(EUTECTIC, 600)
    assert peak(hotter, 600) > base + 10
    assert peak(EUTECTIC, 1200) < base - 5
    assert base < max(EUTECTIC) / 10


def test_wafers_leave_in_load_order() -> None:
    h = Host()
    h.warm()
    for n in range(4):
        h.wait_until(lambda: h.di(0), 100)
        h.load(f"W{n}")
    assert h.ir(11) == [4]
    out = []
    while len(out) < 4:
        h.wait_until(lambda: h.di(1), 1000)
        out.append(h.exit_result()["id"])
        h.cmd(UNLOAD)
    assert out == ["W0", "W1", "W2", "W3"]
    assert h.ir(11) == [0] and h.state() is OvenState.READY


@pytest.mark.parametrize("counts_exit", [True, False])
def test_wafers_on_belt_counts_the_waiting_wafer_as_chosen(counts_exit: bool) -> None:
    """The spec is silent on a wafer waiting at the exit: counted (falls at UNLOAD) or not
    (falls at the exit). APPLY follows the count, as the spec's rule says."""
    h = Host(belt_counts_exit=counts_exit)
    h.warm()
    h.load("W0")
    assert h.ir(11) == [1]
    h.wait_until(lambda: h.di(1), 1000)
    assert h.ir(11) == [1 if counts_exit else 0]
    # PROCESSING while WAFERS_ON_BELT > 0: a waiting wafer not counted leaves the oven READY
    assert h.state() is (OvenState.PROCESSING if counts_exit else OvenState.READY)
    if counts_exit:
        h.refused(6, lambda: h.cmd(APPLY))
    else:
        h.cmd(APPLY)  # WAFERS_ON_BELT = 0: allowed; the waiting wafer keeps its results
        assert h.exit_result()["id"] == "W0" and h.di(1)
    h.cmd(UNLOAD)
    assert h.ir(11) == [0] and not h.di(1)


@pytest.mark.parametrize("counts_exit", [True, False])
def test_apply_goes_heating_then_ready_in_both_counting_models(counts_exit: bool) -> None:
    """reflow-oven.md: APPLY (belt empty, WAFERS_ON_BELT = 0) moves the oven to "state
    HEATING, then READY", and LOAD needs READY or PROCESSING: no LOAD before the zones settle,
    also on an oven counting the tunnel only with a wafer waiting at the exit."""
    h = Host(belt_counts_exit=counts_exit)
    h.warm()
    h.load("A")
    h.clock.advance(100)
    assert h.ir(11) == [1]
    h.refused(6, lambda: h.cmd(APPLY))  # a wafer rides: the belt is not empty
    h.wait_until(lambda: h.di(1), 1000)
    if counts_exit:
        h.cmd(UNLOAD)  # the count falls at UNLOAD
    h.apply(HIGH_LEAD, profile_id=8)
    assert h.state() is OvenState.HEATING
    h.hr(30, text_to_registers("B", 8))
    assert "HEATING" in h.refused(6, lambda: h.cmd(LOAD)).reason
    h.clock.advance(1)
    assert h.state() is OvenState.HEATING
    h.refused(6, lambda: h.cmd(LOAD))
    h.wait_until(lambda: h.state() is not OvenState.HEATING, 1800)
    assert h.state() is OvenState.READY and h.di(2)  # ZONES_STABLE
    assert h.di(1) is not counts_exit  # tunnel-only: A still waits, its results kept
    if not counts_exit:
        assert h.exit_result()["id"] == "A" and h.exit_result()["profile"] == 7
    h.cmd(LOAD)
    assert h.state() is OvenState.PROCESSING and h.ir(11) == [1]


def test_results_stay_after_unload_until_the_next_wafer_exits() -> None:
    h = Host()
    h.warm()
    first = h.one_pass("FIRST")
    h.load("SECOND")
    h.clock.advance(200)
    assert h.exit_result()["id"] == "FIRST" and not h.di(1)
    assert h.exit_result()["peak"] == first["peak"]
    h.wait_until(lambda: h.di(1), 1000)
    assert h.exit_result()["id"] == "SECOND"


def test_exit_blocked_stops_the_belt_and_flags_every_wafer() -> None:
    h = Host()
    h.warm()
    h.load("A")
    h.wait_until(lambda: h.di(0), 100)
    h.load("B")
    h.wait_until(lambda: h.di(1), 1000)  # A waits at the exit; nobody unloads it
    h.wait_until(lambda: h.ir(12) == [530], 100)
    assert h.state() is OvenState.ALARM
    stopped = h.oven.wafer_positions(h.now)
    h.clock.advance(30)
    assert h.oven.wafer_positions(h.now) == stopped  # belt stopped
    h.refused(6, lambda: h.cmd(CLEAR))  # A still waits at the exit
    assert h.exit_result()["id"] == "A" and h.exit_result()["flags"] == 0
    h.cmd(UNLOAD)
    h.clock.advance(2)  # the host takes its time: B stays where the belt stopped
    assert not h.di(1) and h.ir(12) == [530]
    h.cmd(CLEAR)  # the cause (a wafer waiting at the exit) is gone
    h.wait_until(lambda: h.di(1), 10)
    b = h.exit_result()
    assert b["id"] == "B" and b["flags"] & 1


def test_conveyor_coil_off_stops_the_belt_and_flags_the_wafer() -> None:
    h = Host()
    h.warm()
    loaded = h.now
    h.load("W")
    h.clock.advance(100)
    h.coil(1, False)
    assert h.oven.read(C, 1, 1, h.now) == [False]
    h.clock.advance(20)
    h.coil(1, True)
    exit_at = h.wait_until(lambda: h.di(1), 1000)
    assert exit_at - loaded == PASS_S_AT_600 + 20  # late by the time the belt stood
    assert h.exit_result()["flags"] == 1


def test_conveyor_coil_off_flags_every_wafer_on_the_belt_at_once() -> None:
    """reflow-oven.md: switching CONVEYOR_RUN off "stops the belt (and flags every wafer on
    it)": also a stop shorter than the model's 1 s step, which moves no wafer."""
    h = Host()
    h.warm()
    h.load("A")
    h.wait_until(lambda: h.di(0), 100)
    h.load("B")
    h.clock.advance(30.2)
    h.coil(1, False)  # off ...
    h.clock.advance(0.5)
    h.coil(1, True)  # ... and on again within the same step
    for wafer in ("A", "B"):
        h.wait_until(lambda: h.di(1), 1000)
        result = h.exit_result()
        assert result["id"] == wafer and result["flags"] == 1
        h.cmd(UNLOAD)
    h.load("C")  # loaded after the stop: not flagged
    h.wait_until(lambda: h.di(1), 1000)
    assert h.exit_result()["id"] == "C" and h.exit_result()["flags"] == 0


# --- atmosphere and alarms --------------------------------------------------------------------


def test_o2_falls_with_nitrogen_and_rises_without() -> None:
    h = Host()
    h.coil(0, True)
    h.clock.advance(120)
    assert h.ir(13) == [20]  # reflow-oven.md: "about 20 ppm within 120 s of switching on"
    h.coil(0, False)
    h.clock.advance(60)
    assert h.ir(13)[0] > 10_000


def test_o2_above_limit_with_a_wafer_on_the_belt_is_540_and_flag_bit_1() -> None:
    h = Host()
    h.warm()
    h.load("W")
    h.clock.advance(60)
    assert h.ir(12) == [0]
    h.coil(0, False)
    h.wait_until(lambda: h.ir(12) == [540], 30)
    h.coil(0, True)
    h.refused(6, lambda: h.cmd(CLEAR))  # O2 still above the limit
    h.wait_until(lambda: h.ir(13)[0] <= 100, 200)
    h.cmd(CLEAR)
    h.wait_until(lambda: h.di(1), 1000)
    r = h.exit_result()
    assert r["flags"] & 2 and r["o2"] > 100


def test_nitrogen_loss_is_550() -> None:
    h = Host()
    h.warm()
    h.oven.lose_nitrogen(h.now)
    assert h.ir(12) == [550]
    h.clock.advance(60)
    assert h.ir(13)[0] > 1000  # purge gone, air comes in
    h.refused(6, lambda: h.cmd(CLEAR))
    h.oven.restore_nitrogen(h.now)
    h.cmd(CLEAR)
    assert h.ir(12) == [0]


def test_over_temperature_is_510_and_flags_the_wafer_bit_2() -> None:
    h = Host()
    h.warm()
    h.load("W")
    h.oven.stick_heater(5, h.now)
    h.wait_until(lambda: h.ir(12) == [510], 300)
    h.oven.repair_heater(5, h.now)
    h.wait_until(lambda: h.di(1), 1000)  # the belt keeps running on a zone alarm
    assert h.exit_result()["flags"] & 4
    h.cmd(UNLOAD)
    h.wait_until(lambda: h.oven.zone_air(h.now)[4] <= EUTECTIC[4] / 10 + 15, 1000)
    h.cmd(CLEAR)


def test_emergency_stop_stops_the_belt_and_cuts_the_heaters() -> None:
    h = Host()
    h.warm()
    h.load("W")
    h.clock.advance(60)
    h.oven.press_estop(h.now)
    assert h.ir(12) == [900]
    where = h.oven.wafer_positions(h.now)
    h.clock.advance(300)
    assert h.oven.wafer_positions(h.now) == where
    assert h.oven.zone_air(h.now)[7] < EUTECTIC[7] / 10 - 20
    h.refused(6, lambda: h.cmd(CLEAR))
    h.oven.release_estop(h.now)
    h.cmd(CLEAR)
    assert h.state() is OvenState.PROCESSING
    h.wait_until(lambda: h.di(1), 1000)
    assert h.exit_result()["flags"] & 1


def test_scheduled_alarms_at_a_time_and_at_the_nth_wafer() -> None:
    h = Host()
    h.oven.schedule_alarm(520, at_time=50)
    h.oven.schedule_alarm(560, at_wafer=2)
    h.clock.advance(49)
    assert h.ir(12) == [0]
    h.clock.advance(1)
    assert h.ir(12) == [520]
    h.cmd(CLEAR)  # momentary: the cause is gone at once
    h.warm()
    h.one_pass("first")
    h.load("second")
    h.wait_until(lambda: h.ir(12) == [560], 300)
    assert h.oven.wafer_positions(h.now)[0][1] >= 2000  # half way through the tunnel
    h.cmd(CLEAR)
    h.wait_until(lambda: h.di(1), 1000)
    assert h.exit_result()["flags"] & 4


def test_deterministic_under_a_seed_and_independent_of_polling() -> None:
    def run(seed: int, poll_every: float) -> list[int]:
        h = Host(seed)
        h.apply(EUTECTIC)
        h.coil(0, True)
        while h.now < 900:
            h.clock.advance(poll_every)
            h.ir(0, 15)
        return h.ir(0, 15)

    assert run(3, 1.0) == run(3, 30.0)
    assert run(3, 1.0) != run(4, 1.0)


def test_quiet_hours_skipped_at_once_read_the_same_as_stepped_through() -> None:
    def run(poll_every: float) -> tuple[list[int], list[bool], list[tuple[float, str]]]:
        h = Host(9)

        def go_to(t: float) -> None:
            while h.now < t:
                h.clock.advance(min(poll_every, t - h.now))
                h.ir(0, 15)

        h.oven.schedule_alarm(520, at_time=4000)
        h.apply(EUTECTIC)
        h.coil(0, True)
        go_to(3000)
        h.cmd(APPLY)  # the same setpoints again: READY 60 s later
        go_to(5000)
        return h.ir(0, 15), [h.di(a) for a in range(4)], h.oven.drain_events()

    stepped, skipped = run(1.0), run(2000.0)
    assert stepped == skipped
    registers, bits, events = stepped
    assert registers[12] == 520 and bits == [True, False, True, True]
    assert (3061.0, "state HEATING -> READY") in events  # stable from 3001, +60 s
    assert (4000.0, "alarm 520 CONVEYOR JAM (fault plan)") in events  # not skipped over


def test_events_record_state_changes_and_alarms() -> None:
    h = Host()
    h.warm()
    h.oven.jam_conveyor(h.now)
    texts = [text for _, text in h.oven.drain_events()]
    assert "state OFF -> HEATING" in texts and "state HEATING -> READY" in texts
    assert any(t.startswith("alarm 520 CONVEYOR JAM") for t in texts)
    assert h.oven.drain_events() == []
