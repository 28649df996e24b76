"""MQTT through mecha's mqtt_proxy to a private mosquitto: paho-mqtt and mosquitto_pub/sub."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from filters.network.mqtt_proxy.session import FULL_READ
from protocols.mqtt import Connack, Connect, MqttDecoder, Packet, Puback, Publish, encode
from tests.support.mecha import mqtt_proxy_config, run_mecha
from tests.support.mqtt import Client, mosquitto, wait_for
from tests.support.net import free_port, recv_all

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    with mosquitto(tmp_path) as port:
        yield port


@pytest.mark.parametrize("version", [4, 5])
def test_qos_0_1_2_and_retained(tmp_path: Path, broker: int, version: int) -> None:
    config = mqtt_proxy_config(broker, {"topic_stats": ["sensors/#"]})
    with run_mecha(tmp_path, config) as mecha:
        port = mecha.port("mqtt")
        subscriber = Client(port, "sub", version)
        subscriber.wait_connected()
        subscriber.client.subscribe("sensors/#", qos=2)
        wait_for(lambda: subscriber.subacks)
        publisher = Client(port, "pub", version)
        publisher.wait_connected()
        for qos in (0, 1, 2):
            publisher.client.publish(f"sensors/q{qos}", f"m{qos}", qos=qos).wait_for_publish(5)
        wait_for(lambda: len(subscriber.messages) == 3)
        assert sorted(subscriber.messages) == [(f"sensors/q{q}", f"m{q}".encode(), q, False)
                                               for q in (0, 1, 2)]  # fmt: skip
        publisher.client.publish("sensors/last", "kept", qos=1, retain=True).wait_for_publish(5)
        late = Client(port, "late", version)
        late.wait_connected()
        late.client.subscribe("sensors/last", qos=1)
        wait_for(lambda: late.messages)
        assert late.messages[0] == ("sensors/last", b"kept", 1, True)
        for client in (subscriber, publisher, late):
            client.close()
        mecha.wait_metric("mecha_mqtt_messages_total", 4, listener="mqtt", pattern="sensors/#",
                          direction="in")  # fmt: skip


def test_will_is_delivered_when_a_client_vanishes(tmp_path: Path, broker: int) -> None:
    with run_mecha(tmp_path, mqtt_proxy_config(broker)) as mecha:
        port = mecha.port("mqtt")
        watcher = Client(port, "watcher")
        watcher.wait_connected()
        watcher.client.subscribe("status/#", qos=1)
        wait_for(lambda: watcher.subacks)
        doomed = Client(port, "doomed", will=("status/doomed", b"gone", 1, False))
        doomed.wait_connected()
        doomed.client.loop_stop()
        sock = doomed.client.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: the broker sends the will
        wait_for(lambda: watcher.messages)
        assert watcher.messages[0][:2] == ("status/doomed", b"gone")
        watcher.close()


def test_acl_denials_v5_reason_codes(tmp_path: Path, broker: int) -> None:
    acl = [{"topic": "secret/#", "allow": False}]
    with run_mecha(tmp_path, mqtt_proxy_config(broker, {"acl": acl})) as mecha:
        port = mecha.port("mqtt")
        spy = Client(port, "spy")
        spy.wait_connected()
        spy.client.subscribe([("secret/#", 1), ("public/#", 1)])
        wait_for(lambda: spy.subacks)
        assert [int(code.value) for code in spy.subacks[0]] == [0x87, 1]
        published: list[int] = []
        spy.client.on_publish = lambda c, u, mid, reason, props: published.append(int(reason.value))
        spy.client.publish("secret/plans", "x", qos=1)
        spy.client.publish("public/news", "y", qos=1)
        wait_for(lambda: len(published) == 2)
        assert sorted(published) == [0, 0x87]
        wait_for(lambda: spy.messages)
        assert [m[0] for m in spy.messages] == ["public/news"]
        spy.close()
        assert mecha.metric("mecha_mqtt_acl_denials_total", listener="mqtt", action="publish") == 1


def test_acl_denials_v311(tmp_path: Path, broker: int) -> None:
    acl = [{"topic": "secret/#", "allow": False}]
    with run_mecha(tmp_path, mqtt_proxy_config(broker, {"acl": acl})) as mecha:
        port = mecha.port("mqtt")
        old = Client(port, "old", version=4)
        old.wait_connected()
        old.client.subscribe([("secret/#", 1), ("public/#", 1)])
        wait_for(lambda: old.subacks)
        assert [int(getattr(c, "value", c)) for c in old.subacks[0]] == [0x80, 1]
        old.client.publish("secret/plans", "x", qos=1)
        assert old.disconnected.wait(5)  # 3.1.1 cannot refuse one message: disconnect


def test_mosquitto_clients(tmp_path: Path, broker: int) -> None:
    with run_mecha(tmp_path, mqtt_proxy_config(broker)) as mecha:
        port = str(mecha.port("mqtt"))
        subscriber = subprocess.Popen(["mosquitto_sub", "-p", port, "-t", "cli/#", "-C", "2",
                                       "-q", "1", "-V", "mqttv311"],
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(0.5)
        for index in range(2):
            argv = ["mosquitto_pub", "-p", port, "-t", f"cli/{index}", "-m", f"hello {index}",
                    "-q", "1", "-V", "mqttv5"]  # fmt: skip
            subprocess.run(argv, check=True, timeout=10)
        out, _ = subscriber.communicate(timeout=10)
        assert out.split("\n")[:2] == ["hello 0", "hello 1"]


def test_oversized_packet_gets_0x95(tmp_path: Path, broker: int) -> None:
    with run_mecha(tmp_path, mqtt_proxy_config(broker, {"max_packet_size": "1KiB"})) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("mqtt")), timeout=5) as sock:
            sock.sendall(encode(Connect(client_id="big", version=5), 5))
            time.sleep(0.3)
            sock.sendall(b"\x30\x80\x10")  # PUBLISH declaring 2048 bytes
            answer = recv_all(sock)
        disconnect = answer[answer.index(b"\xe0") :]  # after the CONNACK
        assert disconnect[2] == 0x95  # DISCONNECT, "Packet too large"


def test_connection_rate_limit_and_broker_down(tmp_path: Path, broker: int) -> None:
    config = mqtt_proxy_config(broker, {"rate_limit": {"connections_per_second": 0.01, "burst": 2}})
    with run_mecha(tmp_path, config) as mecha:
        port = mecha.port("mqtt")
        first, second = Client(port, "c1"), Client(port, "c2")
        first.wait_connected()
        second.wait_connected()
        third = Client(port, "c3")
        third.wait_connected()
        assert int(third.connack.value) == 0x9F  # Connection rate exceeded
        for client in (first, second):
            client.close()
    down = tmp_path / "down"
    down.mkdir()
    with run_mecha(down, mqtt_proxy_config(free_port())) as mecha:
        lonely = Client(mecha.port("mqtt"), "lonely")
        lonely.wait_connected()
        assert int(lonely.connack.value) == 0x88  # Server unavailable


def test_a_publisher_flooding_in_large_reads_loses_nothing(tmp_path: Path, broker: int) -> None:
    """Reads past FULL_READ make mecha pause the client for a loop turn: all still flows."""
    count = 4000
    payload = bytes(range(100))
    flood = b"".join(
        encode(Publish("flood/t", payload, qos=1, packet_id=i), 4) for i in range(1, count + 1)
    )
    assert len(flood) > 4 * FULL_READ
    with (
        run_mecha(tmp_path, mqtt_proxy_config(broker)) as mecha,
        socket.create_connection(("127.0.0.1", mecha.port("mqtt")), timeout=10) as sock,
    ):
        sock.sendall(encode(Connect(client_id="flood", version=4), 4) + flood)
        decoder = MqttDecoder(1 << 20, "client", version=4)
        packets: list[Packet] = []
        while len(packets) < count + 1:  # the CONNACK, then one PUBACK per PUBLISH
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(packets)} packets"
            packets += decoder.feed(chunk)
    assert isinstance(packets[0], Connack) and packets[0].reason_code == 0
    assert [p.packet_id for p in packets[1:] if isinstance(p, Puback)] == list(range(1, count + 1))
