"""A private mosquitto broker on a free port, and helpers for paho-mqtt clients."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.net import free_port, wait_for_port

Message = tuple[str, bytes, int, bool]
"""topic, payload, QoS, retain flag"""


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    port = free_port()
    config = workdir / f"mosquitto-{port}.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Client:
    """A paho-mqtt client with its network loop on a thread and received messages kept.

    `clean=False` keeps the session (3.1.1 clean session 0; MQTT 5 clean start 0 with
    `session_expiry` seconds, one day unless given)."""

    def __init__(self, port: int, client_id: str, version: int = 5, clean: bool = True,
                 session_expiry: int | None = None, **connect: Any) -> None:  # fmt: skip
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol,
                                  clean_session=clean if version == 4 else None)  # fmt: skip
        self.messages: list[Message] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: Any = None
        self.session_present: bool | None = None
        self.subacks: list[list[Any]] = []
        self.unsubacks = 0
        self.lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        if "will" in connect:
            self.client.will_set(*connect.pop("will"))
        if "username" in connect:
            self.client.username_pw_set(connect.pop("username"), connect.pop("password", None))
        options: dict[str, Any] = {}
        if version == 5:
            options["clean_start"] = clean
            if not clean or session_expiry is not None:
                properties = Properties(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = (
                    86400 if session_expiry is None else session_expiry
                )
                options["properties"] = properties
        self.client.connect("127.0.0.1", port, keepalive=30, **options)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.qos, message.retain))

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
        self.subacks.append(list(codes))

    def _on_unsubscribe(self, *args: Any) -> None:
        self.unsubacks += 1

    def wait_connected(self) -> None:
        assert self.connected.wait(10), "no CONNACK"

    def subscribe(self, *subscriptions: tuple[str, Any]) -> list[int]:
        """Subscribe (filter, QoS or MQTT 5 SubscribeOptions) and wait: the SUBACK's codes."""
        self.wait_connected()
        count = len(self.subacks)
        self.client.subscribe(list(subscriptions))
        wait_for(lambda: len(self.subacks) > count)
        return [int(getattr(code, "value", code)) for code in self.subacks[count]]

    def unsubscribe(self, *topic_filters: str) -> None:
        count = self.unsubacks
        self.client.unsubscribe(list(topic_filters))
        wait_for(lambda: self.unsubacks > count)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.wait_connected()
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[Message]:
        wait_for(lambda: len(self.messages) >= count, timeout)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
