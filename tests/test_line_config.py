"""The line configuration: parsing, defaults, and errors that name file and key."""

import pytest

from drivers.line_config import (
    LineConfigError,
    dump_line_config,
    load_line_config,
    parse_line_config,
)

GOOD = """
[line]
name = "sim-line-1"
time_scale = 100.0

[tools.printer-1]
role = "printer"
transport = "serial"
port = "/dev/pts/5"
baudrate = 115200

[tools.oven-1]
role = "oven"
transport = "modbus-tcp"
host = "127.0.0.1"
port = 15020
unit = 1

[tools.cleaner-1]
role = "cleaner"
transport = "modbus-rtu"
port = "socket://127.0.0.1:15021"
baudrate = 19200
parity = "E"
unit = 2
"""


def test_parses_every_tool_with_its_transport() -> None:
    config = parse_line_config(GOOD, source="line.toml")
    assert config.name == "sim-line-1"
    assert config.time_scale == 100.0
    assert [t.role for t in config.tools.values()] == ["printer", "oven", "cleaner"]
    oven = config.tool("oven-1")
    assert (oven.host, oven.port, oven.unit) == ("127.0.0.1", 15020, 1)
    cleaner = config.tool("cleaner-1")
    assert (cleaner.port, cleaner.parity, cleaner.baudrate) == (
        "socket://127.0.0.1:15021",
        "E",
        19200,
    )
    assert config.by_role("printer")[0].endpoint == "/dev/pts/5"


def test_defaults_follow_the_role() -> None:
    config = parse_line_config(
        '[line]\nname="l"\n[tools.c]\nrole="cleaner"\nport="/dev/ttyUSB1"\n'
        '[tools.p]\nrole="placer"\nport="/dev/ttyUSB0"\n'
    )
    c, p = config.tool("c"), config.tool("p")
    assert (c.transport, c.baudrate, c.parity, c.unit) == ("modbus-rtu", 19200, "E", 2)
    assert (p.transport, p.baudrate, p.parity, p.unit) == ("serial", 115200, "N", None)
    assert config.time_scale == 1.0


def test_the_plater_is_a_text_line_tool_on_tcp(tmp_path) -> None:
    config = parse_line_config(
        '[line]\nname="l"\n[tools.plater-1]\nrole="plater"\nhost="10.0.0.9"\nport=5025\n'
        'state_file="plater-1.json"\n'
    )
    p = config.tool("plater-1")
    assert (p.transport, p.endpoint, p.baudrate, p.unit) == (
        "text-tcp", "10.0.0.9:5025", None, None)
    assert p.timeout_s == 2.5  # past the spec's 2 s after which a command counts as lost
    assert p.state_file == "plater-1.json"
    path = tmp_path / "out.toml"
    path.write_text(dump_line_config(config))
    assert load_line_config(path).tools == config.tools
    with pytest.raises(LineConfigError, match="tools.p.transport: expected text-tcp for a plater"):
        parse_line_config('[line]\nname="l"\n[tools.p]\nrole="plater"\ntransport="serial"\n'
                          'port="/dev/ttyUSB0"\n')


@pytest.mark.parametrize(
    ("scale", "timeout_s"), [(1.0, 0.5), (2.0, 0.25), (250.0, 0.1), (2000.0, 0.1)]
)
def test_reply_timeouts_shrink_with_the_time_scale(scale: float, timeout_s: float) -> None:
    # a lost reply on a fast simulated line must not cost minutes of tool time
    # (docs/decisions/0012-link-timeouts-and-tool-time.md)
    config = parse_line_config(
        f'[line]\nname="l"\ntime_scale={scale}\n[tools.p]\nrole="printer"\nport="x"\n'
        '[tools.o]\nrole="oven"\nhost="h"\nport=502\ntimeout_s=0.3\n'
    )
    assert config.tool("p").timeout_s == timeout_s
    assert config.tool("o").timeout_s == 0.3  # said explicitly: kept


def test_the_line_id_is_optional() -> None:
    assert parse_line_config(GOOD).id is None
    config = parse_line_config(GOOD.replace('name = "sim-line-1"', 'name = "l"\nid = "bay-2"'))
    assert config.id == "bay-2"


def test_dump_round_trips(tmp_path) -> None:
    config = parse_line_config(GOOD.replace('name = "sim-line-1"', 'name = "l"\nid = "bay-2"'))
    path = tmp_path / "out.toml"
    path.write_text(dump_line_config(config))
    again = load_line_config(path)
    assert again.tools == config.tools
    assert again.time_scale == config.time_scale
    assert again.id == "bay-2"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('role = "printer"', 'role = "feeder"'),
            "line.toml: tools.printer-1.role: expected one of printer | placer | oven | cleaner | plater (got 'feeder')",  # noqa: E501
        ),
        (('port = "/dev/pts/5"\n', ""), "line.toml: tools.printer-1.port: expected a pyserial URL"),
        (
            ("port = 15020", 'port = "15020"'),
            "tools.oven-1.port: expected a TCP port number 1-65535 (got '15020')",
        ),
        (("port = 15020", "port = 70000"), "tools.oven-1.port: expected a TCP port number"),
        (("time_scale = 100.0", "time_scale = -1"), "line.time_scale: expected a number > 0"),
        (
            ("time_scale = 100.0", 'time_scale = "fast"'),
            "line.time_scale: expected a number > 0 (got 'fast')",
        ),
        (
            ('transport = "serial"', 'transport = "modbus-tcp"'),
            "tools.printer-1.transport: expected serial for a printer",
        ),
        (('parity = "E"', 'parity = "X"'), "tools.cleaner-1.parity: expected N | E | O"),
        (("unit = 2", "unit = 300"), "tools.cleaner-1.unit: expected a Modbus unit id 0-247"),
        (("baudrate = 115200", "baudrat = 115200"), "tools.printer-1.baudrat: unknown key"),
        (('name = "sim-line-1"', "name = ["), "line.toml: not valid TOML"),
        (('name = "sim-line-1"', 'name = "l"\nid = 7'), "line.id: expected a line id (text)"),
        (('name = "sim-line-1"', 'name = "l"\nid = " "'), "line.id: expected a line id"),
    ],
)
def test_errors_name_file_key_and_expectation(edit, message) -> None:
    old, new = edit
    assert old in GOOD
    with pytest.raises(LineConfigError) as err:
        parse_line_config(GOOD.replace(old, new, 1), source="line.toml")
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LineConfigError, match=r"nope.toml: cannot read line configuration"):
        load_line_config(tmp_path / "nope.toml")


def test_unknown_tool_name_lists_the_tools() -> None:
    config = parse_line_config(GOOD, source="line.toml")
    with pytest.raises(
        LineConfigError, match=r"no tool named 'printer-9' \(tools: printer-1, oven-1, cleaner-1\)"
    ):
        config.tool("printer-9")


def test_each_modbus_tool_names_its_model_fc1_by_default() -> None:
    config = parse_line_config(GOOD)
    assert config.tool("cleaner-1").model == "FC-1"  # a configuration from before the FC-2
    assert config.tool("oven-1").model == "RF-10N"
    fc2 = parse_line_config(GOOD + 'model = "fc-2"\n')  # appended to cleaner-1
    assert fc2.tool("cleaner-1").model == "FC-2"
    assert 'model = "FC-2"' in dump_line_config(fc2)
    assert parse_line_config(dump_line_config(fc2)).tool("cleaner-1").model == "FC-2"


@pytest.mark.parametrize("model", ["FC-3", "rf-10n", "maps/none.toml"])
def test_an_unknown_model_for_the_role_is_refused(model: str) -> None:
    with pytest.raises(LineConfigError, match=(
            r"line.toml: tools.cleaner-1.model: expected FC-1 \| FC-2 or the path of a "
            rf"register map file \(got '{model}'\)")):
        parse_line_config(GOOD + f'model = "{model}"\n', source="line.toml")


def test_a_line_file_nested_hundreds_deep_is_one_clear_error() -> None:
    from drivers.line_config import LineConfigError, parse_line_config

    with pytest.raises(LineConfigError, match="line.toml: not valid TOML: nested too deeply"):
        parse_line_config("a=" + "[" * 600 + "]" * 600, source="line.toml")
