"""MQTT 3.1.1 load: P publishers and one subscriber, QoS 0 or QoS 1; prints JSON.

    python -m benchmarks.load.mqtt_load --port 1883 --qos 1 --publishers 4 --seconds 8

The subscriber subscribes to `sensors/bench-<run>/#` at the QoS of the run (so the broker
delivers at that QoS) and counts the PUBLISHes it receives, acknowledging QoS 1 ones.
Each publisher sends to its own topic under that prefix:
  QoS 0  as fast as its socket takes them (batches of pre-encoded packets, paused while
         the transport's write buffer is above its high-water mark);
  QoS 1  keeping a window of `--window` unacknowledged PUBLISHes, one new per PUBACK.
The first `--warmup` seconds are not counted; rates are over the `--seconds` that follow.
Then publishers stop, QoS 1 ones wait for their last PUBACKs, and the subscriber waits
for stragglers (until it has all, or nothing arrives for `--quiet` seconds), so the
whole-run totals say how many messages were lost (QoS 0 allows a broker to drop).

Packets are built with protocols.mqtt's `encode` and read with its `MqttDecoder`.
Output keys: qos, publishers, window, size, seconds, delivered, delivered_per_s,
published, published_per_s, acked, acked_per_s (QoS 1), published_total, acked_total
(QoS 1), delivered_total, missing (published, for QoS 1 acknowledged, but not
delivered), errors, error_kinds, error_sample, cpu (percent of one core this process and
each `--watch NAME=PID` process used over the measured window).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from typing import Any, cast

import uvloop

from benchmarks.load.cpu import CpuWatch, parse_watch
from protocols.mqtt import (
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttError,
    Packet,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
    encode,
)

VERSION = 4
MAX_PACKET = 1 << 20
QOS0_BATCH = 64
"""QoS 0 PUBLISHes per write."""
QOS0_WRITES_PER_TURN = 16
"""Writes before a QoS 0 publisher yields to the event loop."""
PUBACK_HEAD = encode(Puback(1), VERSION)[:2]
MAX_ID = 0xFFFF


class Bench:
    """Shared by every connection: the phase, the error counts."""

    def __init__(self, qos: int, size: int, prefix: str) -> None:
        self.qos = qos
        self.size = size
        self.prefix = prefix
        self.publishing = False
        self.closing = False
        self.errors: Counter[str] = Counter()
        self.error_sample: str | None = None

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if self.error_sample is None:
            self.error_sample = f"{kind}: {detail}"[:200]


class Client(asyncio.Protocol):
    """One connection: CONNECT, CONNACK, then every packet to `on_packets`."""

    def __init__(self, bench: Bench, client_id: str) -> None:
        loop = asyncio.get_running_loop()
        self.bench = bench
        self.client_id = client_id
        self.transport: asyncio.Transport | None = None
        self.decoder = MqttDecoder(MAX_PACKET, "client", version=VERSION)
        self.connected: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        connect = Connect(client_id=self.client_id, version=VERSION, keep_alive=120)
        self.transport.write(encode(connect, VERSION))

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except MqttError as error:
            self.bench.error("malformed packet from the server", error.reason)
            packets = error.packets
            if self.transport is not None:
                self.transport.abort()
        self.on_packets(packets)

    def on_packets(self, packets: list[Packet]) -> None:
        for packet in packets:
            self.on_other(packet)

    def on_other(self, packet: Packet) -> None:
        if isinstance(packet, Connack) and not self.connected.done():
            if packet.reason_code == 0:
                self.connected.set_result(None)
            else:
                error = f"{self.client_id}: CONNACK return code {packet.reason_code}"
                self.connected.set_exception(RuntimeError(error))
        else:
            self.bench.error("unexpected packet", f"{type(packet).__name__} to {self.client_id}")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def disconnect(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(Disconnect(), VERSION))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.bench.closing:
            self.bench.error("connection lost", f"{self.client_id}: {exc or 'closed by peer'}")
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"{self.client_id}: connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)


class Subscriber(Client):
    def __init__(self, bench: Bench, client_id: str) -> None:
        super().__init__(bench, client_id)
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.delivered = 0
        self.prefix = bench.prefix + "/"

    def subscribe(self) -> None:
        assert self.transport is not None
        topic_filter = self.prefix + "#"
        packet = Subscribe(1, (Subscription(topic_filter, self.bench.qos),))
        self.transport.write(encode(packet, VERSION))

    def on_packets(self, packets: list[Packet]) -> None:
        bench = self.bench
        qos, size, prefix = bench.qos, bench.size, self.prefix
        acks = []
        for packet in packets:
            if type(packet) is Publish:
                if packet.qos != qos or len(packet.payload) != size:
                    bench.error("unexpected delivery", f"QoS {packet.qos}, "
                                f"{len(packet.payload)} bytes on {packet.topic}")  # fmt: skip
                elif not packet.topic.startswith(prefix):
                    bench.error("unexpected delivery", f"topic {packet.topic}")
                else:
                    self.delivered += 1
                if packet.qos == 1:
                    acks.append(PUBACK_HEAD + packet.packet_id.to_bytes(2, "big"))
            elif isinstance(packet, Suback):
                if packet.reason_codes != (qos,):
                    self.subscribed.set_exception(
                        RuntimeError(f"SUBACK {packet.reason_codes}, wanted ({qos},)")
                    )
                else:
                    self.subscribed.set_result(None)
            else:
                self.on_other(packet)
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))


class Publisher(Client):
    def __init__(self, bench: Bench, client_id: str, topic: str, window: int) -> None:
        super().__init__(bench, client_id)
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.sent = 0
        self.acked = 0
        self.window = window
        self.in_flight: set[int] = set()
        self.next_id = 0
        self.idle: asyncio.Future[None] = loop.create_future()
        self.stopped = False
        payload = os.urandom(bench.size)
        if bench.qos == 0:
            self.batch = encode(Publish(topic, payload), VERSION) * QOS0_BATCH
        else:  # a template; the packet identifier is spliced in per message
            template = encode(Publish(topic, payload, qos=1, packet_id=1), VERSION)
            cut = len(template) - len(payload) - 2
            self.head, self.tail = template[:cut], template[cut + 2 :]

    def start(self) -> None:
        if self.bench.qos == 0:
            self.pump()
        else:
            assert self.transport is not None
            self.transport.write(b"".join(self.publish() for _ in range(self.window)))

    # -- QoS 0 ------------------------------------------------------------------------------

    def pump(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for _ in range(QOS0_WRITES_PER_TURN):
            if self.paused or not self.bench.publishing:
                return
            transport.write(self.batch)
            self.sent += QOS0_BATCH
        self.loop.call_soon(self.pump)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.bench.qos == 0:
            self.pump()

    # -- QoS 1 ------------------------------------------------------------------------------

    def publish(self) -> bytes:
        packet_id = self.next_id % MAX_ID + 1
        self.next_id = packet_id
        if packet_id in self.in_flight:
            self.bench.error("packet identifier still in flight", str(packet_id))
        self.in_flight.add(packet_id)
        self.sent += 1
        return self.head + packet_id.to_bytes(2, "big") + self.tail

    def on_packets(self, packets: list[Packet]) -> None:
        out = []
        publishing = self.bench.publishing
        for packet in packets:
            if type(packet) is Puback:
                try:
                    self.in_flight.remove(packet.packet_id)
                except KeyError:
                    self.bench.error("PUBACK for no PUBLISH in flight", str(packet.packet_id))
                    continue
                self.acked += 1
                if packet.reason_code != 0:
                    self.bench.error("PUBACK reason code", f"0x{packet.reason_code:02X}")
                if publishing:
                    out.append(self.publish())
            else:
                self.on_other(packet)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if self.stopped and not self.in_flight and not self.idle.done():
            self.idle.set_result(None)

    def stop(self) -> None:
        """Publishing is over: `idle` is done once no PUBLISH waits for its PUBACK."""
        self.stopped = True
        if (self.bench.qos == 0 or not self.in_flight) and not self.idle.done():
            self.idle.set_result(None)


async def connect(client: Client, host: str, port: int) -> None:
    await asyncio.get_running_loop().create_connection(lambda: client, host, port)
    await asyncio.wait_for(client.connected, 10)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    token = f"{os.getpid()}-{os.urandom(3).hex()}"
    bench = Bench(args.qos, args.size, f"sensors/bench-{token}")
    subscriber = Subscriber(bench, f"bench-sub-{token}")
    await connect(subscriber, args.host, args.port)
    subscriber.subscribe()
    await asyncio.wait_for(subscriber.subscribed, 10)
    publishers = [Publisher(bench, f"bench-pub-{token}-{i}", f"{bench.prefix}/p{i}", args.window)
                  for i in range(args.publishers)]  # fmt: skip
    await asyncio.gather(*(connect(p, args.host, args.port) for p in publishers))

    def snapshot() -> tuple[float, int, int, int]:
        return (time.perf_counter(), subscriber.delivered,
                sum(p.acked for p in publishers), sum(p.sent for p in publishers))  # fmt: skip

    bench.publishing = True
    for publisher in publishers:
        publisher.start()
    watch = CpuWatch(parse_watch(args.watch))
    await asyncio.sleep(args.warmup)
    watch.start()
    t0, delivered0, acked0, published0 = snapshot()
    await asyncio.sleep(args.seconds)
    t1, delivered1, acked1, published1 = snapshot()
    cpu = watch.busy()
    bench.publishing = False
    for publisher in publishers:
        publisher.stop()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.idle for p in publishers)), args.drain)
    except TimeoutError:
        unacked = sum(len(p.in_flight) for p in publishers)
        bench.errors["PUBACK never came"] += unacked
    _, _, acked_total, published_total = snapshot()
    expected = published_total if args.qos == 0 else acked_total
    deadline = time.perf_counter() + args.drain
    last, quiet_since = subscriber.delivered, time.perf_counter()
    while subscriber.delivered < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        if subscriber.delivered != last:
            last, quiet_since = subscriber.delivered, time.perf_counter()
        elif time.perf_counter() - quiet_since > args.quiet:
            break
    bench.closing = True
    for client in (*publishers, subscriber):
        client.disconnect()
    await asyncio.wait_for(asyncio.gather(*(c.lost for c in (*publishers, subscriber))), 10)
    seconds = t1 - t0
    result: dict[str, Any] = {
        "qos": args.qos,
        "publishers": args.publishers,
        "window": args.window if args.qos else None,
        "size": args.size,
        "seconds": round(seconds, 4),
        "delivered": delivered1 - delivered0,
        "delivered_per_s": (delivered1 - delivered0) / seconds,
        "published": published1 - published0,
        "published_per_s": (published1 - published0) / seconds,
        "published_total": published_total,
        "delivered_total": subscriber.delivered,
        "missing": expected - subscriber.delivered,
    }
    if args.qos:
        result |= {"acked": acked1 - acked0, "acked_per_s": (acked1 - acked0) / seconds,
                   "acked_total": acked_total}  # fmt: skip
    errors = {"errors": sum(bench.errors.values()), "error_kinds": dict(bench.errors),
              "error_sample": bench.error_sample, "cpu": cpu}  # fmt: skip
    return result | errors


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.mqtt_load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--window", type=int, default=100, help="QoS 1 PUBLISHes in flight")
    parser.add_argument("--size", type=int, default=64, help="payload bytes")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=15.0, help="max wait after publishing")
    parser.add_argument("--quiet", type=float, default=2.0, help="stop waiting after this idle")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                        help="report this process's CPU use over the window too")  # fmt: skip
    args = parser.parse_args()
    json.dump(uvloop.run(run(args)), sys.stdout)
    print()


if __name__ == "__main__":
    main()
