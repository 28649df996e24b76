"""Worker shares of a config and the merge of the workers' /metrics (no processes)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxy.config.parse import load_config
from proxy.config.units import Address
from proxy.metrics_merge import merge
from proxy.workers import carries_runtime, worker_config

CONFIG = """\
admin: {address: "127.0.0.1:15000"}
listeners:
  - {name: tcp, address: "127.0.0.1:0", filters: [{name: tcp_proxy, config: {cluster: up}}]}
  - {name: api, address: "127.0.0.1:3500", filters: [{name: runtime_api}]}
  - name: mixed
    address: "127.0.0.1:0"
    filters:
      - name: http
        config:
          http_filters: [{name: runtime_api}]
          route_config: {virtual_hosts: [{name: vh, domains: ["*"], routes: [
            {match: {prefix: /}, route: {cluster: up}}]}]}
clusters:
  - {name: up, endpoints: ["127.0.0.1:6379"]}
runtime:
  components: [{name: statestore, type: state.in-memory}]
"""


def test_runtime_listeners_and_the_runtime_stay_in_worker_zero(tmp_path: Path) -> None:
    path = tmp_path / "mecha.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert [carries_runtime(li) for li in config.listeners] == [False, True, True]

    zero = worker_config(config, 0, ["tcp=40001", "mixed=40002"])
    assert [li.name for li in zero.listeners] == ["tcp", "api", "mixed"]
    assert [li.address for li in zero.listeners] == [
        Address("127.0.0.1", 40001), Address("127.0.0.1", 3500), Address("127.0.0.1", 40002),
    ]  # fmt: skip
    assert all(li.reuse_port for li in zero.listeners)
    assert zero.runtime is not None and zero.admin is None

    one = worker_config(config, 1, ["tcp=40001", "mixed=40002"])
    assert [li.name for li in one.listeners] == ["tcp"]
    assert one.listeners[0].address == Address("127.0.0.1", 40001)
    assert one.runtime is None and one.admin is None


WORKER = """\
# HELP mecha_listener_downstream_cx_total Downstream connections accepted
# TYPE mecha_listener_downstream_cx_total counter
mecha_listener_downstream_cx_total{{listener="tcp"}} {cx}
# HELP mecha_endpoint_healthy 1 when the endpoint passes health checks
# TYPE mecha_endpoint_healthy gauge
mecha_endpoint_healthy{{cluster="up",endpoint="127.0.0.1:1"}} 1.0
# HELP mecha_listener_downstream_cx_active Downstream connections open
# TYPE mecha_listener_downstream_cx_active gauge
mecha_listener_downstream_cx_active{{listener="tcp"}} {active}
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {rss}
# HELP mecha_rq_seconds Request time
# TYPE mecha_rq_seconds histogram
mecha_rq_seconds_bucket{{le="0.1"}} {fast}
mecha_rq_seconds_bucket{{le="+Inf"}} {cx}
mecha_rq_seconds_count {cx}
mecha_rq_seconds_sum 1.5
"""


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode())
        for s in family.samples
    }


def test_merge_sums_counters_gauges_and_buckets_and_keeps_process_metrics_apart() -> None:
    merged = samples(merge([
        ("0", WORKER.format(cx=7, active=2, rss=100, fast=5)),
        ("1", WORKER.format(cx=5, active=1, rss=200, fast=4)),
    ]))  # fmt: skip
    assert merged[("mecha_listener_downstream_cx_total", (("listener", "tcp"),))] == 12
    assert merged[("mecha_listener_downstream_cx_active", (("listener", "tcp"),))] == 3
    healthy = (("cluster", "up"), ("endpoint", "127.0.0.1:1"))
    assert merged[("mecha_endpoint_healthy", healthy)] == 1  # the same endpoint, not two
    assert merged[("mecha_rq_seconds_bucket", (("le", "0.1"),))] == 9
    assert merged[("mecha_rq_seconds_bucket", (("le", "+Inf"),))] == 12
    assert merged[("mecha_rq_seconds_count", ())] == 12
    assert merged[("mecha_rq_seconds_sum", ())] == 3.0
    assert merged[("process_resident_memory_bytes", (("worker", "0"),))] == 100
    assert merged[("process_resident_memory_bytes", (("worker", "1"),))] == 200


def test_merge_of_nothing_is_an_empty_exposition() -> None:
    assert merge([]) == b""
