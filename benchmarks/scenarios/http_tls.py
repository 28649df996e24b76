"""https: the http scenario with TLS on the downstream side.

wrk (HTTP/1.1) and h2load (HTTP/2 by ALPN) over TLS against mecha, nginx and haproxy, each
terminating TLS with the same certificate (ECDSA P-256, self-signed, minted here with openssl)
in one worker / thread and proxying over plain HTTP/1.1 to the same nginx backend as the http
scenario.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    Processes,
    Table,
    ensure_commands,
    free_port,
    mecha_command,
    processes,
    publish,
    rss_bytes,
    wait_for_port,
    wait_for_ready,
)
from benchmarks.http_load import LOAD_COMMANDS, LoadResult, h2load, wrk
from benchmarks.load.cpu import cpu_seconds
from benchmarks.nginx_tools import NGINX_COMMANDS, start_backend, start_nginx, start_reverse_proxy
from benchmarks.scenarios import http
from benchmarks.scenarios.http import (
    CONNECTIONS,
    H2_CLIENTS,
    H2_ROWS,
    H2_STREAMS,
    SECONDS,
    WRK_ROWS,
    error_note,
    record,
    rotated,
)

MECHA = """\
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: https
    address: 127.0.0.1:{port}
    tls:
      cert_file: {cert}
      key_file: {key}
    filters:
      - name: http
        config:
          access_log: "off"
          route_config:
            virtual_hosts:
              - name: default
                domains: ["*"]
                routes:
                  - match: {{prefix: /}}
                    route: {{cluster: upstream, timeout: 15s}}
clusters:
  - name: upstream
    connect_timeout: 2s
    endpoints: [127.0.0.1:{upstream}]
"""

NGINX = """\
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""

CPU_ROW = "CPU per request (us)"
H2_REQUESTS = 10_000
SYSTEMS = ["mecha", "nginx", "haproxy"]
Proxies = dict[str, tuple[int, int]]
"""name -> (port, pid)"""

HAPROXY = """\
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend https
    bind 127.0.0.1:{listen} ssl crt {pem} alpn h2,http/1.1
    default_backend nginx
backend nginx
    server nginx 127.0.0.1:{upstream}
"""


def mint_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1; wrk does not verify it."""
    cert, key = workdir / "server.crt", workdir / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=bench",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its children (nginx's master and its worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


def measured(port: int, pid: int, scheme: str = "https") -> tuple[LoadResult, float]:
    """One wrk run, and the proxy's CPU microseconds per good response."""
    before = tree_cpu(pid)
    result = wrk(port, CONNECTIONS, SECONDS, scheme=scheme)
    served = result.rps * SECONDS
    return result, (tree_cpu(pid) - before) / served * 1e6 if served else float("nan")


def start_mecha(procs: Processes, upstream: int, cert: Path, key: Path) -> tuple[int, int]:
    """mecha terminating TLS; returns (port, pid)."""
    port, admin = free_port(), free_port()
    config = procs.write("mecha.yaml", MECHA.format(admin=admin, port=port, cert=cert, key=key,
                                                    upstream=upstream))  # fmt: skip
    process = procs.start("mecha", [*mecha_command(), str(config)])
    wait_for_ready(admin)
    return port, process.pid


def start_nginx_tls(procs: Processes, upstream: int, cert: Path, key: Path) -> tuple[int, int]:
    port = free_port()
    servers = NGINX.format(port=port, upstream=upstream, cert=cert, key=key)
    start_nginx(procs, "nginx-tls", servers, [port])
    return port, procs.running[-1].pid


def start_haproxy_tls(procs: Processes, upstream: int, cert: Path, key: Path) -> tuple[int, int]:
    port = free_port()
    pem = procs.write("haproxy.pem", cert.read_text() + key.read_text())
    config = procs.write("haproxy.cfg", HAPROXY.format(listen=port, upstream=upstream, pem=pem))
    process = procs.start("haproxy", ["haproxy", "-f", str(config)])
    wait_for_port(port)
    return port, process.pid


def tls_cost_note(table: Table, plain_cpu: dict[str, list[float]]) -> str:
    """What TLS adds to each proxy's CPU per request, against the same proxy without it."""
    parts = []
    for name, values in plain_cpu.items():
        without, with_tls = statistics.median(values), table.median(CPU_ROW, name)
        parts.append(f"{name} {without:,.0f} us without TLS, {with_tls:,.0f} us with it "
                     f"(+{with_tls / without - 1:.0%})")  # fmt: skip
    return ("TLS cost, CPU per request in the same rounds against the same proxy on plain "
            "HTTP (mecha: configs/http-proxy.yaml; nginx: the same proxy_pass without ssl): "
            + "; ".join(parts) + ".")  # fmt: skip


@dataclass
class Figures:
    wrk: Table
    h2: Table
    wrk_errors: dict[str, Counter[str]] = field(default_factory=dict)
    h2_errors: dict[str, Counter[str]] = field(default_factory=dict)
    plain_cpu: dict[str, list[float]] = field(default_factory=dict)


def run(args: argparse.Namespace) -> str:
    ensure_commands({**NGINX_COMMANDS, **LOAD_COMMANDS, "haproxy": "haproxy"})
    h2_requests = args.requests or H2_REQUESTS
    figures = Figures(
        Table(f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency over TLS, keep-alive GET / "
              "(12-byte body)", "", SYSTEMS, label="metric",
              formats={**WRK_ROWS, CPU_ROW: ",.0f"}),
        Table(f"h2load -c{H2_CLIENTS} -m{H2_STREAMS} -n {h2_requests:,} over TLS (ALPN h2), "
              "GET /", "", SYSTEMS, label="metric", formats=H2_ROWS),
    )  # fmt: skip
    with processes() as procs:
        cert, key = mint_certificate(procs.workdir)
        backend, _ = start_backend(procs)
        proxies = {"nginx": start_nginx_tls(procs, backend, cert, key),
                   "haproxy": start_haproxy_tls(procs, backend, cert, key),
                   "mecha": start_mecha(procs, backend, cert, key)}  # fmt: skip
        plain = {"mecha": http.start_mecha(procs, backend),
                 "nginx": (start_reverse_proxy(procs, backend), procs.running[-1].pid)}  # fmt: skip
        mecha_pid = proxies["mecha"][1]
        time.sleep(1.0)
        idle_rss = rss_bytes(mecha_pid)
        for port, _ in proxies.values():  # warm up connections, pools and caches; not recorded
            wrk(port, CONNECTIONS, 1, scheme="https")
            h2load(port, H2_CLIENTS, H2_STREAMS, 1_000, scheme="https")
        for round_ in range(args.rounds):
            measure_round(figures, round_, proxies, plain, h2_requests)
        loaded_rss = rss_bytes(mecha_pid)
        mecha_log = (procs.workdir / "mecha.log").read_text().splitlines()
    add_notes(figures, args.rounds)
    log_note = "mecha log (warning level): " + (
        f"{len(mecha_log)} lines, first: `{mecha_log[0]}`" if mecha_log else "empty"
    )
    rss_note = (
        f"mecha RSS: {idle_rss / 2**20:.1f} MiB idle, {loaded_rss / 2**20:.1f} MiB after load. "
        f"{log_note}."
    )
    return publish("https", [figures.wrk, figures.h2], "\n" + rss_note)


def measure_round(
    figures: Figures, round_: int, proxies: Proxies, plain: Proxies, h2_requests: int
) -> None:
    for system in rotated(SYSTEMS, round_):
        result, cpu = measured(*proxies[system])
        record(figures.wrk, system, result, figures.wrk_errors)
        figures.wrk.add(CPU_ROW, system, cpu)
    for name, (port, pid) in plain.items():
        figures.plain_cpu.setdefault(name, []).append(measured(port, pid, "http")[1])
    for system in rotated(SYSTEMS, round_):
        port = proxies[system][0]
        result = h2load(port, H2_CLIENTS, H2_STREAMS, h2_requests, scheme="https")
        record(figures.h2, system, result, figures.h2_errors)


def add_notes(figures: Figures, rounds: int) -> None:
    common = (
        f"Median of {rounds} interleaved rounds. Ratios are mecha / peer: above 1.00x is "
        "better for requests/s, worse for latency."
    )
    figures.wrk.notes += [
        f"{common} Each proxy terminates TLS (the same self-signed ECDSA P-256 certificate, "
        "TLS 1.3 as negotiated with wrk, keep-alive so handshakes are only the connections' "
        "first) and proxies over plain HTTP/1.1 to one nginx backend (`return 200`). mecha: "
        "`tls:` on the listener, router, access log off; nginx: `listen ssl http2`, "
        "proxy_pass with upstream keepalive 64; haproxy: `bind ssl crt alpn h2,http/1.1`, "
        "http mode, http-reuse always. One worker / thread each. CPU per request: the "
        "proxy's user + system CPU time over the run (nginx: master and worker) divided by "
        "its good responses; unlike requests/s it does not depend on how much of the shared "
        "cores the proxy got.",
        tls_cost_note(figures.wrk, figures.plain_cpu),
        error_note(figures.wrk_errors),
        "Target: mecha >= 0.7x nginx (requests/s), one worker each.",
    ]
    figures.h2.notes += [
        f"{common} The same proxies and certificate; h2load negotiates h2 by ALPN, the "
        "proxies speak HTTP/1.1 to the backend. Latency is h2load's time for request.",
        error_note(figures.h2_errors),
    ]
