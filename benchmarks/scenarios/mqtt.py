"""mqtt: QoS 0 and QoS 1 publishes delivered to one subscriber, direct to a private mosquitto
and through mecha's mqtt_proxy; the load is benchmarks/load/mqtt_load.py."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict
from typing import Any

from benchmarks.harness import (
    ROOT,
    Processes,
    Table,
    Tally,
    ensure_commands,
    free_port,
    mecha_command,
    metric_total,
    processes,
    publish,
    rss_bytes,
    run_json,
    wait_for_port,
    wait_for_ready,
)

MOSQUITTO = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages {window}
max_queued_messages {queue}
log_dest stdout
log_type error
log_type warning
log_type notice
"""
PUBLISHERS, WINDOW, SIZE = 4, 100, 64
QUEUE = 100_000
"""mosquitto's per-client queue (default 1000) and in-flight window (WINDOW, default 20):
see the notes."""
DROP_NOTICE = "Outgoing messages are being dropped"
SECONDS, WARMUP, DRAIN = 6, 1, 10
SYSTEMS = ["mecha", "direct"]
ROWS = {
    0: {"QoS 0 delivered/s": "delivered_per_s", "QoS 0 published/s": "published_per_s"},
    1: {"QoS 1 delivered/s": "delivered_per_s", "QoS 1 acked/s (publishers)": "acked_per_s"},
}
OUTCOMES = ("accepted", "rate_limited", "broker_unavailable", "protocol_error")
"""mecha's MQTT connection outcomes reported in the notes."""
PATTERN = "sensors/#"
"""The topic_stats pattern of configs/mqtt-proxy.yaml the load's topics fall under."""


def start_mosquitto(procs: Processes) -> tuple[int, int]:
    """A private broker; returns (port, pid)."""
    port = free_port()
    config = procs.write("mosquitto.conf", MOSQUITTO.format(port=port, window=WINDOW, queue=QUEUE))
    process = procs.start("mosquitto", ["mosquitto", "-c", str(config)])
    wait_for_port(port)
    return port, process.pid


def start_mecha(procs: Processes, broker: int) -> tuple[int, int, int]:
    """mecha on the example config configs/mqtt-proxy.yaml; returns (port, admin port, pid)."""
    port, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{port}", "MECHA_UPSTREAM": f"127.0.0.1:{broker}",
           "MECHA_ADMIN": f"127.0.0.1:{admin}", "MECHA_ACCESS_LOG": "off"}  # fmt: skip
    process = procs.start("mecha", [*mecha_command(), str(ROOT / "configs/mqtt-proxy.yaml")], env)
    wait_for_ready(admin)
    return port, admin, process.pid


def mqtt_load(port: int, qos: int, watch: dict[str, int]) -> dict[str, Any]:
    args = ["--port", str(port), "--qos", str(qos), "--publishers", str(PUBLISHERS),
            "--window", str(WINDOW), "--size", str(SIZE), "--seconds", str(SECONDS),
            "--warmup", str(WARMUP), "--drain", str(DRAIN),
            *(f"--watch={name}={pid}" for name, pid in watch.items())]  # fmt: skip
    return run_json("benchmarks.load.mqtt_load", args, timeout=SECONDS + 2 * DRAIN + 60)


def mecha_messages(admin: int) -> tuple[float, float]:
    """PUBLISHes mecha took from clients ("in") and from the broker ("out") under PATTERN."""
    name = "mecha_mqtt_messages_total"
    return (metric_total(admin, name, pattern=PATTERN, direction="in"),
            metric_total(admin, name, pattern=PATTERN, direction="out"))  # fmt: skip


def rotated(systems: list[str], round_: int) -> list[str]:
    shift = round_ % len(systems)
    return systems[shift:] + systems[:shift]


def delivery_note(qos: int, system: str, counts: Counter[str]) -> str:
    """Where the messages of the runs (warm-up and drain included) went."""
    sent = counts["acked"] if qos else counts["published"]
    what = "acknowledged by the broker" if qos else "published"
    missing = sent - counts["delivered"]
    text = f"QoS {qos}, {system}: {sent:,} {what}, {counts['delivered']:,} delivered"
    if system == "mecha":
        text += (
            f"; mecha took {counts['in']:,.0f} from the publishers and {counts['out']:,.0f} "
            "from the broker for the subscriber"
        )
    if not missing:
        return text + ", none missing"
    share = f"{missing:,} ({missing / sent:.1%})" if sent else f"{missing:,}"
    text += f"; MISSING {share}"
    if system == "direct":
        text += " (dropped by the broker, or still queued there when the run ended)"
    else:
        unforwarded = counts["in"] - counts["out"]
        in_mecha = counts["out"] - counts["delivered"]
        text += (
            f": {unforwarded:,.0f} never came back from the broker (dropped or still queued "
            f"there when the run ended), {in_mecha:,.0f} were between mecha and the subscriber "
            "when it disconnected"
        )
    return text


def error_note(tallies: dict[int, Tally]) -> str:
    clean = (
        "no malformed or unexpected packet, no refused CONNECT or SUBSCRIBE, no connection "
        "lost, every QoS 1 PUBLISH acknowledged"
    )
    noisy = {qos: tally for qos, tally in tallies.items() if tally.has_errors()}
    if not noisy:
        return f"Errors: none ({clean})."
    counted = "missing messages are not errors, see above"
    return " ".join(
        f"QoS {qos}: " + tally.error_note(clean, counted) for qos, tally in noisy.items()
    )


def run(args: argparse.Namespace) -> str:
    ensure_commands({"mosquitto": "mosquitto"})
    table = Table(
        f"MQTT 3.1.1, {PUBLISHERS} publishers -> broker -> 1 subscriber, {SIZE}-byte payloads, "
        f"{SECONDS}s",
        "msg/s", list(SYSTEMS), formats={row: ",.0f" for rows in ROWS.values() for row in rows},
    )  # fmt: skip
    tallies = {qos: Tally() for qos in ROWS}
    counts: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    with processes() as procs:
        broker, broker_pid = start_mosquitto(procs)
        mecha, admin, mecha_pid = start_mecha(procs, broker)
        ports = {"mecha": mecha, "direct": broker}
        watches = {"mecha": {"mecha": mecha_pid, "mosquitto": broker_pid},
                   "direct": {"mosquitto": broker_pid}}  # fmt: skip
        time.sleep(1.0)
        idle_rss = rss_bytes(mecha_pid)
        for round_ in range(args.rounds):
            for qos, rows in ROWS.items():
                for system in rotated(SYSTEMS, round_):
                    before = mecha_messages(admin)
                    result = mqtt_load(ports[system], qos, watches[system])
                    after = mecha_messages(admin)
                    for row, key in rows.items():
                        table.add(row, system, result[key])
                    tallies[qos].add(system, result)
                    run_counts = counts[(qos, system)]
                    run_counts["published"] += result["published_total"]
                    run_counts["acked"] += result.get("acked_total", 0)
                    run_counts["delivered"] += result["delivered_total"]
                    if system == "mecha":
                        run_counts["in"] += round(after[0] - before[0])
                        run_counts["out"] += round(after[1] - before[1])
        loaded_rss = rss_bytes(mecha_pid)
        outcomes = {o: metric_total(admin, "mecha_mqtt_connections_total", outcome=o)
                    for o in OUTCOMES}  # fmt: skip
        procs.stop_all()  # mosquitto flushes its log (stdout) when it exits
        mecha_log = (procs.workdir / "mecha.log").read_text().splitlines()
        broker_log = (procs.workdir / "mosquitto.log").read_text().splitlines()
    drops = sum(DROP_NOTICE in line for line in broker_log)
    table.notes += [
        f"Median of {args.rounds} interleaved rounds; rates over {SECONDS}s after a {WARMUP}s "
        f"warm-up. Load: benchmarks/load/mqtt_load.py, one uvloop process: {PUBLISHERS} "
        f"publisher connections, each on its own topic under `sensors/`, and one subscriber "
        "connection (`sensors/bench-<run>/#`, subscribed at the QoS of the run). QoS 0: "
        "publishers write as fast as their sockets take it; QoS 1: each keeps "
        f"{WINDOW} PUBLISHes unacknowledged; the subscriber acknowledges QoS 1 deliveries. "
        "delivered/s is counted at the subscriber, published/s and acked/s at the publishers. "
        "Broker: a private mosquitto (one thread, persistence off, max_inflight_messages "
        f"{WINDOW} like the publishers' window, max_queued_messages {QUEUE:,}: with the defaults, "
        "20 and 1000, the subscriber's round trip limits QoS 1 deliveries and mosquitto drops "
        "QoS 1 messages it has already acknowledged as soon as the subscriber lags, 20-40% of "
        "them here even direct; QoS 0 messages are dropped once a subscriber has that many "
        "queued). "
        "mecha: configs/mqtt-proxy.yaml (topic ACLs, rate limit, per-pattern counts on "
        f"`{PATTERN}`). Ratios are mecha / direct. All processes share the host's "
        f"{os.cpu_count()} cores.",
        "Delivery over all runs, warm-ups and drains included: "
        + "; ".join(delivery_note(qos, s, counts[(qos, s)]) for qos in ROWS for s in SYSTEMS)
        + f". mosquitto logged `{DROP_NOTICE}` {drops} times.",
        " ".join(tallies[qos].cpu_note(f" of QoS {qos}") + "." for qos in ROWS),
        error_note(tallies),
        "Target: QoS 1 delivered/s >= 0.7x direct.",
    ]
    log_note = "mecha log (warning level): " + (
        f"{len(mecha_log)} lines, first: `{mecha_log[0]}`" if mecha_log else "empty"
    )
    connections = ", ".join(f"{n:,.0f} {o}" for o, n in outcomes.items() if n)
    extra = (
        f"\nmecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        f"mecha's MQTT connections: {connections}. {log_note}.\n"
    )
    return publish("mqtt", [table], extra)
