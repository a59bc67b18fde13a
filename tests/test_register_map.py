"""Register maps as data: the codecs, the two shipped maps and the loader's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.register_map import (
    Register,
    RegisterMapError,
    ascii_text,
    ascii_words,
    known_models,
    load_register_map,
    parse_register_map,
    s16,
    s16_word,
    scaled,
    u32,
    u32_words,
    unscaled,
)

# --- pure codecs ----------------------------------------------------------------------------------


def test_s16_two_complement() -> None:
    assert s16(0xFFF6) == -10
    assert s16(0x7FFF) == 32767
    assert s16(0x8000) == -32768
    assert s16_word(-10) == 0xFFF6
    with pytest.raises(ValueError, match="signed 16-bit"):
        s16_word(40000)


@given(st.integers(-32768, 32767))
def test_s16_round_trip(value: int) -> None:
    assert s16(s16_word(value)) == value


def test_u32_high_word_first() -> None:
    assert u32(0x0001, 0x0002) == 65538
    assert u32_words(65538) == [1, 2]
    assert u32_words(0xFFFFFFFF) == [0xFFFF, 0xFFFF]
    with pytest.raises(ValueError):
        u32_words(-1)


@given(st.integers(0, 0xFFFFFFFF))
def test_u32_round_trip(value: int) -> None:
    assert u32(*u32_words(value)) == value


def test_ascii_high_byte_first_nul_padded() -> None:
    # "LOT42-07" from the oven spec's worked example, in 8 registers.
    words = ascii_words("LOT42-07", 8)
    assert words[:4] == [0x4C4F, 0x5434, 0x322D, 0x3037]
    assert words[4:] == [0, 0, 0, 0]
    assert ascii_text(words) == "LOT42-07"
    assert ascii_words("ABC", 2) == [0x4142, 0x4300]  # odd length: low byte padded


def test_ascii_read_drops_the_blanks_a_tool_pads_with() -> None:
    words = [int.from_bytes(b"LOT42-07"[i:i + 2], "big") for i in range(0, 8, 2)]
    assert ascii_text([*words, 0x2020, 0x2020, 0x2020, 0x2020]) == "LOT42-07"
    assert ascii_text([*words, 0x2000, 0, 0, 0]) == "LOT42-07"  # blank, then the NUL
    assert ascii_words("LOT42-07", 8)[4:] == [0, 0, 0, 0]  # what we write: NUL padded


def test_ascii_rejects_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="longer than 16"):
        ascii_words("X" * 17, 8)
    with pytest.raises(ValueError, match="ASCII"):
        ascii_words("LOT-µ", 8)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16))
def test_ascii_round_trip(text: str) -> None:
    assert ascii_text(ascii_words(text, 8)) == text.rstrip(" ")  # trailing blanks: padding


def test_scaling() -> None:
    assert scaled(2251, 0.1) == 225.1
    assert scaled(153, 0.01) == 1.53
    assert scaled(7, 1) == 7 and isinstance(scaled(7, 1), int)
    assert unscaled(225.1, 0.1) == 2251
    assert unscaled(1.53, 0.01) == 153
    with pytest.raises(ValueError):
        unscaled(float("nan"), 0.1)


# --- the shipped maps ---------------------------------------------------------------------------


def test_known_models_are_shipped() -> None:
    assert {"rf-10n", "fc-1"} <= set(known_models())


def test_oven_map_matches_the_spec() -> None:
    m = load_register_map("rf-10n")
    assert m.model == "RF-10N" and m.unit == 1
    sp = m["ZONE_SP"]
    assert (sp.table, sp.address, sp.count, sp.type, sp.scale, sp.range) == (
        "holding", 0, 10, "s16", 0.1, (0, 4000)
    )
    assert m["COMMAND"].address == 20
    codes = {"APPLY": 1, "LOAD": 2, "UNLOAD": 3, "CLEAR": 4, "STANDBY": 5}
    assert dict(m["COMMAND"].codes) == codes
    assert (m["LOAD_WAFER_ID"].address, m["LOAD_WAFER_ID"].count) == (30, 8)
    assert m["STATE"].code_name(2) == "READY"
    assert (m["EXIT_CURVE"].address, m["EXIT_CURVE"].count) == (100, 250)
    assert (m["WAFER_AT_EXIT"].table, m["WAFER_AT_EXIT"].address) == ("discrete", 1)
    assert (m["CONVEYOR_RUN"].table, m["CONVEYOR_RUN"].address) == ("coil", 1)
    assert m.alarm_text(530) == "EXIT BLOCKED"
    assert m.alarm_text(12345) == "UNKNOWN ALARM"


def test_cleaner_map_matches_the_spec() -> None:
    m = load_register_map("FC-1")  # model names are case-insensitive
    assert m.model == "FC-1" and m.unit == 2
    assert (m["CYCLE_COUNT"].address, m["CYCLE_COUNT"].type) == (20, "u32")
    assert m["CYCLE_COUNT"].decode([0x0001, 0x86A0]) == 100000
    assert dict(m["COMMAND"].codes)["ABORT"] == 5
    assert m["STATE"].code_name(7) == "ALARM"
    assert m["SPRAY_PRESSURE"].encode(2.5) == [25]
    assert m.alarm_text(640) == "CHEMISTRY LOW"


def test_thermocouple_failure_reads_none() -> None:
    pv = load_register_map("rf-10n")["ZONE_PV"]
    words = [2251, 0x7FFF, 0xFFF6] + [0] * 7
    assert pv.decode_all(words) == (225.1, None, -1.0) + (0.0,) * 7


@given(
    kind=st.sampled_from(["u16", "s16"]),
    scale=st.sampled_from([1, 0.1, 0.01]),
    no_reading=st.sampled_from([None, 0x7FFF, 0]),
    words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=130),
)
def test_word_decoding_matches_the_scalar_codecs(
    kind: str, scale: float, no_reading: int | None, words: list[int]
) -> None:
    """The one-pass u16/s16 decoder gives what s16() and scaled() give word by word."""
    reg = Register("R", "input", 0, count=len(words), type=kind, scale=scale,
                   no_reading=no_reading)
    expected = tuple(
        None if w == no_reading else scaled(s16(w) if kind == "s16" else w, scale)
        for w in words
    )
    assert reg.decode_all(words) == expected


def test_array_and_text_encoding() -> None:
    m = load_register_map("rf-10n")
    assert m["ZONE_SP"].encode_all([150.0, 225.5] + [0.0] * 8) == [1500, 2255] + [0] * 8
    with pytest.raises(ValueError, match="ZONE_SP: expected 10 values"):
        m["ZONE_SP"].encode_all([1.0])
    assert m["LOAD_WAFER_ID"].encode("W1") == [0x5731] + [0] * 7
    with pytest.raises(ValueError, match="LOAD_WAFER_ID"):
        m["LOAD_WAFER_ID"].encode("W" * 17)
    with pytest.raises(ValueError, match="PROFILE_ID.*unsigned 16-bit"):
        m["PROFILE_ID"].encode(70000)


def test_out_of_range_names_the_value_in_engineering_units() -> None:
    m = load_register_map("rf-10n")
    words = m["ZONE_SP"].encode_all([450.0] + [0.0] * 9)
    assert m["ZONE_SP"].out_of_range(words) == ["ZONE_SP[1]=450.0 °C outside 0.0..400.0 °C"]
    assert m["CONVEYOR_SPEED"].out_of_range([100]) == [
        "CONVEYOR_SPEED=100 mm/min outside 200..1500 mm/min"
    ]
    assert m["CONVEYOR_SPEED"].out_of_range([600]) == []


def test_blocks_split_at_unmapped_addresses() -> None:
    m = load_register_map("rf-10n")
    status = m.block("ZONE_PV", "STATE", "ACTIVE_PROFILE_ID")
    assert (status.address, status.count, status.runs) == (0, 15, ((0, 15),))
    exit_block = m.block("EXIT_PEAK", "EXIT_FLAGS", "EXIT_WAFER_ID")
    assert exit_block.address == 20 and exit_block.count == 18
    if not m.read_across_gaps:
        assert exit_block.runs == ((20, 7), (30, 8))
    with pytest.raises(ValueError, match="different tables"):
        m.block("ZONE_PV", "ZONE_SP")


def test_unknown_register_and_code_are_clear() -> None:
    m = load_register_map("rf-10n")
    with pytest.raises(KeyError, match="RF-10N.*no register 'ZONE_XX'"):
        m["ZONE_XX"]
    with pytest.raises(KeyError, match="no code 'FLY'.*APPLY"):
        m["COMMAND"].code("FLY")


# --- loader errors: file, key, expected ---------------------------------------------------------


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(RegisterMapError, match="no register map for tool model 'rf-99'.*rf-10n"):
        load_register_map("rf-99")


def test_unreadable_map_file(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match="cannot read register map"):
        load_register_map(tmp_path / "missing.toml")


def test_map_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "oven-x.toml"
    path.write_text('[tool]\nmodel = "OX"\n[input.T]\naddress = 3\ntype = "s16"\nscale = 0.1\n')
    m = load_register_map(path)
    assert m.model == "OX" and m["T"].decode([0xFFFF]) == -0.1
    assert m.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool\n", "not valid TOML"),
        ('[input.X]\naddress = 1\n', "tool: expected a \\[tool\\] table"),
        ('[tool]\nmodel = "M"\n', "no registers"),
        ('[tool]\nmodel = "M"\nspeed = 3\n[input.X]\naddress = 1\n', "tool.speed: unknown key"),
        ('[tool]\nmodel = "M"\n[input.X]\ncount = 2\n', "input.X.address: expected a protocol"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = -1\n', "input.X.address.*got -1"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\ntype = "f32"\n',
         "input.X.type: expected u16 \\| s16 \\| u32 \\| ascii"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\ntype = "u32"\ncount = 3\n',
         "input.X.count: expected a multiple of 2"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\nscale = 0\n', "input.X.scale"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\nrange = [5]\n', "input.X.range"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\nwidth = 5\n', "input.X.width: unknown key"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\ncodes = { A = "one" }\n',
         "input.X.codes.A"),
        ('[tool]\nmodel = "M"\n[coil.X]\naddress = 1\ntype = "u16"\n',
         "coil.X.type: expected bool"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\n[holding.X]\naddress = 1\n',
         "input.X: name already used in holding"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\ncount = 4\n[input.Y]\naddress = 3\n',
         "input.Y: address 3 overlaps input.X"),
        ('[tool]\nmodel = "M"\n[input.X]\naddress = 1\n[alarms]\nhot = "HOT"\n', "alarms.hot"),
        ('[tool]\nmodel = "M"\n[inputs.X]\naddress = 1\n', "inputs: unknown table"),
    ],
)
def test_bad_map_files_name_file_key_and_expectation(text: str, message: str) -> None:
    with pytest.raises(RegisterMapError, match=message) as info:
        parse_register_map(text, source="maps/bad.toml")
    assert str(info.value).startswith("maps/bad.toml: ")


# --- a model that extends another (the FC-2 is the FC-1 plus a strip mode) -----------------------


def test_fc2_is_the_fc1_plus_its_own_registers() -> None:
    fc1, fc2 = load_register_map("fc-1"), load_register_map("FC-2")
    assert (fc2.model, fc2.extends, fc2.role, fc2.unit) == ("FC-2", "FC-1", "cleaner", 2)
    for name, reg in fc1.registers.items():
        if name != "STATE":
            assert fc2[name] == reg  # every FC-1 entry holds unchanged
    assert fc2["STATE"].codes == {**fc1["STATE"].codes, "STRIPPING": 8}
    added = {n: (r.table, r.address) for n, r in fc2.registers.items() if n not in fc1}
    assert added == {
        "MODE": ("holding", 6), "STRIP_TEMP_SP": ("holding", 7), "STRIP_TIME": ("holding", 8),
        "STRIP_TEMP_PV": ("input", 7), "RESULT_MASK_RESIDUE": ("input", 8),
        "MODE_ACTIVE": ("input", 9), "STRIPPER_LOW": ("discrete", 4),
    }
    assert fc2["MODE"].codes == {"FLUX_CLEAN": 1, "RESIST_STRIP": 2}
    assert fc2["STRIP_TIME"].range == (60, 1800)
    assert fc2["RESULT_MASK_RESIDUE"].decode([25]) == 2.5
    assert fc2.alarms == {**fc1.alarms, 650: "STRIPPER LOW",
                          660: "STRIP TANK TEMPERATURE OUT OF RANGE"}
    assert fc2.has_code("MODE", "RESIST_STRIP") and not fc1.has_code("MODE", "RESIST_STRIP")
    assert fc2.present("STRIP_TEMP_PV", "NOPE") == ("STRIP_TEMP_PV",)


def test_an_extending_map_file_names_its_base_by_model_or_relative_path(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        '[tool]\nmodel = "B"\nunit = 7\n[input.T]\naddress = 0\n[alarms]\n1 = "ONE"\n')
    (tmp_path / "child.toml").write_text(
        '[tool]\nmodel = "C"\nextends = "base.toml"\n[input.U]\naddress = 1\n'
        '[alarms]\n2 = "TWO"\n')
    child = load_register_map(tmp_path / "child.toml")
    assert (child.model, child.extends, child.unit) == ("C", "B", 7)
    assert set(child.registers) == {"T", "U"} and child.alarms == {1: "ONE", 2: "TWO"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.toml": '[tool]\nmodel = "A"\nextends = "b.toml"\n[input.X]\naddress = 1\n',
          "b.toml": '[tool]\nmodel = "B"\nextends = "a.toml"\n[input.Y]\naddress = 2\n'},
         "tool.extends: 'a.toml' leads back here"),
        ({"a.toml": '[tool]\nmodel = "A"\nextends = "fc-9"\n[input.X]\naddress = 1\n'},
         "no register map for tool model 'fc-9'"),
        ({"a.toml": '[tool]\nmodel = "A"\nextends = "fc-1"\n[holding.STATE]\naddress = 30\n'},
         "holding.STATE: FC-1 has STATE in input"),
        ({"a.toml": '[tool]\nmodel = "A"\nextends = "fc-1"\n[input.X]\naddress = 5\n'},
         "input.X: address 5 overlaps input.RESULT_IONIC"),
        ({"a.toml": '[tool]\nmodel = "A"\nextends = 1\n[input.X]\naddress = 1\n'},
         "tool.extends: expected a model name"),
    ],
)
def test_bad_extends(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(RegisterMapError, match=message):
        load_register_map(tmp_path / "a.toml")
