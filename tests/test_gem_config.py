"""The [gem] section of the line configuration: defaults, checks, one-line errors."""

import pytest

from controller.gem.config import GemConfig, parse_gem_config
from controller.gem.hsms import Timers
from drivers.line_config import LineConfigError, dump_line_config, parse_line_config

LINE = '[line]\nname = "l1"\n[tools.oven-1]\nrole = "oven"\ntransport = "modbus-tcp"\n' \
       'host = "127.0.0.1"\nport = 1502\n'


def test_the_line_configuration_keeps_the_gem_table_for_the_controller():
    config = parse_line_config(LINE + '[gem]\nport = 5001\nmodel_name = "BL-2"\n'
                               "spool_overwrite = true\n", source="l.toml")
    assert config.gem == {"port": 5001, "model_name": "BL-2", "spool_overwrite": True}
    again = parse_line_config(dump_line_config(config))
    assert again.gem == config.gem
    gem = parse_gem_config(config.gem, source="l.toml")
    assert (gem.port, gem.model_name, gem.spool_overwrite) == (5001, "BL-2", True)
    assert gem.timers == Timers() and gem.device_id == 0
    assert parse_line_config(LINE).gem is None
    assert parse_gem_config({}, source="l.toml") == GemConfig()
    assert parse_gem_config({"linktest": 0}, source="l.toml").timers.linktest == 0  # never
    assert parse_gem_config({"linktest": 60}, source="l.toml").timers.linktest == 60.0


def test_an_unknown_table_names_gem_among_the_known():
    with pytest.raises(LineConfigError, match=r"l.toml: mes: unknown table \(known: gem, line"):
        parse_line_config(LINE + "[mes]\nport = 1\n", source="l.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"prot": 5000}, r"gem.prot: unknown key \(known: device_id, host, linktest, model_name"),
        ({"port": 70000}, "gem.port: expected a whole number 0-65535, got 70000"),
        ({"device_id": -1}, "gem.device_id: expected a whole number 0-32767"),
        ({"t3": 0}, "gem.t3: expected seconds 1-120, got 0"),
        ({"t7": "10"}, "gem.t7: expected seconds 1-240"),
        ({"model_name": "X" * 21}, "gem.model_name: expected 1-20 ASCII characters"),
        ({"spool_overwrite": 1}, "gem.spool_overwrite: expected true or false"),
        ({"spool_limit": 0}, "gem.spool_limit: expected a whole number 1-1000000"),
        ({"linktest": 0.5}, r"gem.linktest: expected seconds 1-3600, or 0 for never, got 0.5"),
        ({"linktest": True}, "gem.linktest: expected seconds 1-3600, or 0 for never"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(table, message):
    with pytest.raises(LineConfigError, match=message) as caught:
        parse_gem_config(table, source="l.toml")
    assert str(caught.value).startswith("l.toml: ") and "\n" not in str(caught.value)
