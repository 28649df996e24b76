"""Private nginx instances for HTTP scenarios: a fixed-response backend and a reverse proxy."""

from __future__ import annotations

from benchmarks.harness import Processes, free_port, wait_for_port

NGINX_COMMANDS = {"nginx": "nginx"}

BODY = "hello world\n"

# Everything nginx writes (pid, logs, request/response buffers) stays under the prefix; nothing
# needs root. keepalive_requests is raised so neither clients nor upstream connections are closed
# every 1,000 requests (the 1.22 default, which also caps HTTP/2 connections).
MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{servers}}}
"""

BACKEND = """\
    server {{
        listen 127.0.0.1:{port}{http2};
        location / {{
            return 200 "{body}";
        }}
    }}
"""

REVERSE_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{http2};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def start_nginx(procs: Processes, name: str, servers: str, ports: list[int]) -> None:
    """Run nginx in the foreground with its own prefix under the workdir; wait for `ports`."""
    prefix = procs.workdir / name
    prefix.mkdir()
    config = procs.write(f"{name}/nginx.conf", MAIN.format(prefix=prefix, servers=servers))
    argv = ["nginx", "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    procs.start(name, argv)
    for port in ports:
        wait_for_port(port)


def start_backend(procs: Processes, name: str = "backend") -> tuple[int, int]:
    """nginx answering `200 hello world` on /; returns (HTTP/1.1 port, h2c prior-knowledge port)."""
    http1, http2 = free_port(), free_port()
    body = BODY.replace("\n", "\\n")
    servers = BACKEND.format(port=http1, http2="", body=body) + BACKEND.format(
        port=http2, http2=" http2", body=body
    )
    start_nginx(procs, name, servers, [http1, http2])
    return http1, http2


def start_reverse_proxy(
    procs: Processes, upstream: int, name: str = "nginx-proxy", http2: bool = False
) -> int:
    """nginx proxying everything to 127.0.0.1:`upstream` over pooled HTTP/1.1 connections;
    with `http2`, its listener speaks h2c (prior knowledge) instead of HTTP/1.1."""
    port = free_port()
    text = REVERSE_PROXY.format(port=port, upstream=upstream, http2=" http2" if http2 else "")
    start_nginx(procs, name, text, [port])
    return port
