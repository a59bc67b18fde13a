"""The feed over TLS (``mqtts://``): a CA and a broker certificate made here with openssl,
a real mosquitto with a TLS listener.

The feed checks the broker's certificate against ``[mqtt] ca_file``, host name
included; a broker whose certificate another CA signed is refused, said in the
log and tried again with backoff, and the line never waits for it. Waits are on
messages and events, bounded by ``WAIT_S``; nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from controller.feed.config import MqttConfigError, mqtt_config
from controller.feed.mqtt import mqtt_feed
from controller.line.events import EventKind, LineEventStream
from tests.mqtt_broker import mosquitto

WAIT_S = 30.0
FAST = (0.05, 0.2)
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(folder: Path, *args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("no openssl here to make the test's certificates")
    subprocess.run([binary, *args], cwd=folder, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> Path:
    _openssl(folder, "req", "-x509", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN={name}")
    return folder / f"{name}.crt"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A plant CA, the broker's certificate it signed (for 127.0.0.1), another CA."""
    ca = _ca(tmp_path, "plant-ca")
    _openssl(tmp_path, "req", *KEY, "-keyout", "broker.key", "-out", "broker.csr",
             "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl(tmp_path, "x509", "-req", "-in", "broker.csr", "-CA", "plant-ca.crt", "-CAkey",
             "plant-ca.key", "-CAcreateserial", "-out", "broker.crt", "-days", "2",
             "-extfile", "san.ext")
    return {"ca": ca, "cert": tmp_path / "broker.crt", "key": tmp_path / "broker.key",
            "other": _ca(tmp_path, "other-ca")}


def _tool_state(stream: LineEventStream) -> None:
    stream.publish(EventKind.TOOL_STATE, tool="oven-1", e10_state="standby", previous=None,
                   reason="ready")


async def test_the_feed_checks_the_brokers_certificate_and_publishes_over_tls(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    async with mosquitto(tmp_path, (pki["cert"], pki["key"])) as broker:
        config = mqtt_config({"site": "p1", "ca_file": str(pki["ca"])}, broker.url)
        assert config is not None and config.tls and config.where == broker.url
        stream = LineEventStream("bay-A", lambda: 0.0)
        async with mqtt_feed(config, stream, "bay-A", backoff_s=FAST) as feed:
            await asyncio.wait_for(feed.connected.wait(), WAIT_S)
            _tool_state(stream)
        # A subscriber of its own over TLS: the retained state the feed put there.
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        async with aiomqtt.Client("127.0.0.1", broker.port, tls_context=context) as fab:
            await fab.subscribe("bumpline/p1/bay-A/tool/oven-1", qos=1)
            message = await asyncio.wait_for(anext(aiter(fab.messages)), WAIT_S)
    assert message.retain and json.loads(bytes(message.payload))["e10_state"] == "standby"
    assert feed.connections == 1 and feed.published == 1 and feed.dropped == 0


async def test_a_broker_another_ca_signed_is_refused_and_the_line_goes_on(
        tmp_path: Path, pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    async with mosquitto(tmp_path, (pki["cert"], pki["key"])) as broker:
        config = mqtt_config({"ca_file": str(pki["other"])}, broker.url)
        assert config is not None
        stream = LineEventStream("bay-A", lambda: 0.0)
        with caplog.at_level(logging.WARNING, logger="controller.feed"):
            async with mqtt_feed(config, stream, "bay-A", backoff_s=FAST) as feed:
                await asyncio.wait_for(feed.lost.wait(), WAIT_S)
                _tool_state(stream)  # the line publishes; nothing waits for the broker
                assert feed.state.snapshot() and not feed.connected.is_set()
    assert feed.connections == 0
    said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert said and "certificate verify failed" in said[0], said


def test_tls_settings_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    config = mqtt_config(None, "mqtts://broker.plant")
    assert config is not None and (config.port, config.tls, config.ca_file) == (
        8883, True, None)
    bad = [({"url": "mqtt://h", "ca_file": "ca.pem"}, "ca_file is for mqtts://"),
           ({"url": "mqtts://h", "ca_file": str(tmp_path / "none.pem")}, "no such file"),
           ({"url": "mqtts://h", "ca_file": str(tmp_path / "junk.pem")}, "not a CA certificate"),
           ({"url": "mqtts://h", "ca_file": 3}, "ca_file: expected a file name")]
    for table, says in bad:
        with pytest.raises(MqttConfigError) as caught:
            mqtt_config(table, None, source="line.toml")
        message = str(caught.value)
        assert says in message and message.startswith("line.toml: ") and "\n" not in message
