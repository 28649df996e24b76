"""A private mosquitto broker on a free port, and helpers for paho-mqtt clients."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.net import free_port, wait_for_port


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


class Client:
    """A paho-mqtt client with its network loop on a thread and received messages kept."""

    def __init__(self, port: int, client_id: str, version: int = 5, **connect: Any) -> None:
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol)  # fmt: skip
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: Any = None
        self.subacks: list[list[Any]] = []
        self.lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        if "will" in connect:
            self.client.will_set(*connect.pop("will"))
        if "username" in connect:
            self.client.username_pw_set(connect.pop("username"), connect.pop("password", None))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack = reason
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.qos, message.retain))

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
        self.subacks.append(list(codes))

    def wait_connected(self) -> None:
        assert self.connected.wait(10), "no CONNACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
