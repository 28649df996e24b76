"""HTTP/1.1 through mecha's connection manager and router, against a real HTTP backend."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import HTTP1_PATHS, Mecha, http1_paths_config, http_config, run_mecha
from tests.support.net import free_port, is_closed_by_peer, recv_all

pytestmark = pytest.mark.integration


def request(
    mecha: Mecha, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", mecha.port("http"), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def echo(mecha: Mecha, path: str = "/echo", **kwargs: Any) -> dict[str, Any]:
    status, _, body = request(mecha, kwargs.pop("method", "GET"), path, **kwargs)
    assert status == 200, body
    return dict(json.loads(body))


@pytest.fixture
def backend() -> Any:
    with http_backend("a") as server:
        yield server


def test_get_is_proxied_with_request_id_forwarded_for_and_traceparent(
    tmp_path: Path, backend: Backend
) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        seen = echo(mecha, "/echo?x=1", headers={"user-agent": "tester"})
        headers = seen["headers"]
        assert seen["path"] == "/echo?x=1"
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "http"
        assert len(headers["x-request-id"]) == 36
        assert headers["traceparent"].startswith("00-") and len(headers["traceparent"]) == 55
        assert headers["user-agent"] == "tester"
        line = mecha.wait_access_log(1)[-1]
        assert '"GET /echo?x=1 HTTP/1.1" 200 - ' in line
        assert f'"127.0.0.1:{backend.port}" route=vh/0 cluster=app' in line
        assert headers["x-request-id"] in line
        mecha.wait_metric(
            "mecha_http_requests_total", 1, route="vh/0", cluster="app", code_class="2xx"
        )


def test_incoming_ids_are_kept(tmp_path: Path, backend: Backend) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        seen = echo(mecha, headers={"x-request-id": "abc", "traceparent": parent,
                                    "x-forwarded-for": "10.0.0.1"})  # fmt: skip
    assert seen["headers"]["x-request-id"] == "abc"
    assert seen["headers"]["traceparent"] == parent
    assert seen["headers"]["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"


def test_request_bodies_content_length_and_chunked(tmp_path: Path, backend: Backend) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        assert echo(mecha, method="POST", body=b"x" * 100_000)["body"] == "x" * 100_000
        chunked = subprocess.run(
            ["curl", "-s", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
             f"http://127.0.0.1:{mecha.port('http')}/echo"],
            input=b"chunked body", capture_output=True, timeout=10,
        )  # fmt: skip
        assert json.loads(chunked.stdout)["body"] == "chunked body"


def test_keep_alive_and_pipelining(tmp_path: Path, backend: Backend) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        connection = http.client.HTTPConnection("127.0.0.1", mecha.port("http"), timeout=5)
        for _ in range(5):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.read() == b"hello from a"
        connection.close()
        with socket.create_connection(("127.0.0.1", mecha.port("http")), timeout=5) as sock:
            pipelined = b"".join(
                f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for code in (201, 202)
            )
            sock.sendall(
                pipelined + b"GET /status/203 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            answer = recv_all(sock)
        assert re.findall(rb"HTTP/1.1 (\d{3}) ", answer) == [b"201", b"202", b"203"]
        assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="app") <= 2  # pooled


def test_expect_100_continue(tmp_path: Path, backend: Backend) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        result = subprocess.run(
            ["curl", "-sv", "-H", "Expect: 100-continue", "--data-binary", "hello",
             f"http://127.0.0.1:{mecha.port('http')}/echo"],
            capture_output=True, timeout=10,
        )  # fmt: skip
    assert b"HTTP/1.1 100 Continue" in result.stderr
    assert json.loads(result.stdout)["body"] == "hello"


SMUGGLING = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (SMUGGLING, 400),
    ],
)
def test_malformed_requests_get_a_status_and_a_close(
    tmp_path: Path, backend: Backend, raw: bytes, status: int
) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("http")), timeout=5) as sock:
            sock.sendall(raw)
            answer = recv_all(sock)
        assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
        assert backend.count == 0
        assert mecha.metric("mecha_http_downstream_protocol_errors_total", listener="http") == 1
        assert request(mecha, "GET", "/")[0] == 200  # the process is fine
        assert "Traceback" not in mecha.logs()


def test_body_too_large_is_413(tmp_path: Path, backend: Backend) -> None:
    config = http_config({"app": [backend.port]}, manager={"max_request_body": "1KiB"})
    with run_mecha(tmp_path, config) as mecha:
        assert request(mecha, "POST", "/echo", body=b"x" * 2048)[0] == 413
        assert request(mecha, "POST", "/echo", body=b"x" * 512)[0] == 200
    assert backend.count == 1


def test_errors_the_proxy_makes(tmp_path: Path, backend: Backend) -> None:
    routes = [
        {
            "match": {"prefix": "/slow/"},
            "route": {"cluster": "app", "timeout": "200ms", "prefix_rewrite": "/"},
        },
        {"match": {"prefix": "/dead"}, "route": {"cluster": "dead"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}},
    ]
    config = http_config({"app": [backend.port], "dead": [free_port()]}, routes)
    config["listeners"][0]["filters"][0]["config"]["route_config"]["virtual_hosts"][0][
        "domains"
    ] = ["good.test"]
    with run_mecha(tmp_path, config) as mecha:
        assert request(mecha, "GET", "/", headers={"host": "other.test"})[0] == 404
        status, _, body = request(mecha, "GET", "/slow/delay/2000", headers={"host": "good.test"})
        assert status == 504 and b"upstream request timeout" in body
        status, _, body = request(mecha, "GET", "/dead", headers={"host": "good.test"})
        assert status == 503
        flags = Counter(line.split('" ')[1].split()[1] for line in mecha.wait_access_log(3))
        assert flags == {"NR": 1, "UT": 1, "UF": 1}
        # a keep-alive connection survives a 404
        connection = http.client.HTTPConnection("127.0.0.1", mecha.port("http"), timeout=5)
        connection.request("GET", "/", headers={"host": "nope"})
        response = connection.getresponse()
        assert response.status == 404
        response.read()
        connection.request("GET", "/", headers={"host": "good.test"})
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b"hello from a"
        connection.close()


def test_routing_matchers_rewrites_and_header_mutation(tmp_path: Path) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(http_backend("a"))
        b = stack.enter_context(http_backend("b"))
        routes: list[dict[str, Any]] = [
            {"match": {"path": "/exact"}, "route": {"cluster": "b"}},
            {"match": {"regex": "/items/[0-9]+"}, "route": {"cluster": "b"}},
            {"match": {"prefix": "/", "headers": [{"name": "x-canary", "exact": "1"}]},
             "route": {"cluster": "b"}},
            {"match": {"prefix": "/", "methods": ["DELETE"]}, "route": {"cluster": "b"}},
            {"match": {"prefix": "/api/"},
             "route": {"cluster": "a", "prefix_rewrite": "/echo/", "host_rewrite": "inner.test"},
             "request_headers_to_add": [{"name": "x-added", "value": "yes"}],
             "request_headers_to_remove": ["x-secret"],
             "response_headers_to_add": [{"name": "x-served-by", "value": "mecha"}]},
            {"match": {"path": "/health"}, "direct_response": {"status": 200, "body": "ok"}},
            {"match": {"prefix": "/old/"},
             "redirect": {"prefix_rewrite": "/new/", "response_code": 308}},
            {"match": {"prefix": "/"}, "route": {"cluster": "a"}},
        ]  # fmt: skip
        mecha = stack.enter_context(
            run_mecha(tmp_path, http_config({"a": [a.port], "b": [b.port]}, routes))
        )

        def served_by(method: str, path: str, headers: dict[str, str] | None = None) -> str:
            return request(mecha, method, path, headers=headers)[1]["x-backend"]

        assert served_by("GET", "/exact") == "b"
        assert served_by("GET", "/exact/no") == "a"
        assert served_by("GET", "/items/42") == "b"
        assert served_by("GET", "/items/x") == "a"
        assert served_by("GET", "/", {"x-canary": "1"}) == "b"
        assert served_by("DELETE", "/") == "b"
        status, headers, body = request(mecha, "GET", "/api/v1?q=1", headers={"x-secret": "s"})
        seen = json.loads(body)
        assert seen["path"] == "/echo/v1?q=1"
        assert seen["headers"]["host"] == "inner.test"
        assert seen["headers"]["x-added"] == "yes" and "x-secret" not in seen["headers"]
        assert headers["x-served-by"] == "mecha"
        assert request(mecha, "GET", "/health")[2] == b"ok"
        status, headers, _ = request(mecha, "GET", "/old/page?x=1", headers={"host": "h.test"})
        assert status == 308 and headers["location"] == "http://h.test/new/page?x=1"


def test_weighted_clusters_split_traffic(tmp_path: Path) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(http_backend("a"))
        b = stack.enter_context(http_backend("b"))
        routes = [{"match": {"prefix": "/"}, "route": {"weighted_clusters": [
            {"name": "a", "weight": 80}, {"name": "b", "weight": 20}]}}]  # fmt: skip
        mecha = stack.enter_context(
            run_mecha(tmp_path, http_config({"a": [a.port], "b": [b.port]}, routes))
        )
        connection = http.client.HTTPConnection("127.0.0.1", mecha.port("http"), timeout=5)
        counts: Counter[str] = Counter()
        for _ in range(400):
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            counts[response.getheader("x-backend") or ""] += 1
        connection.close()
        assert 260 < counts["a"] < 380 and counts["a"] + counts["b"] == 400


def test_retries_on_5xx_then_succeed(tmp_path: Path, backend: Backend) -> None:
    policy = {"retry_on": "5xx", "num_retries": 2, "backoff": {"base_interval": "10ms"}}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "app", "retry_policy": policy}}]
    with run_mecha(tmp_path, http_config({"app": [backend.port]}, routes)) as mecha:
        backend.fail_next(2, 503)
        status, _, body = request(mecha, "POST", "/echo", body=b"replayed body")
        assert status == 200 and json.loads(body)["body"] == "replayed body"
        assert backend.count == 3
        assert mecha.metric("mecha_cluster_upstream_rq_retry_total", cluster="app") == 2
        backend.fail_next(3, 503)
        assert request(mecha, "GET", "/")[0] == 503  # retries exhausted: the upstream's answer


def test_no_replay_of_a_body_beyond_the_retry_buffer(tmp_path: Path, backend: Backend) -> None:
    policy = {"retry_on": "5xx", "num_retries": 3}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "app", "retry_policy": policy}}]
    config = http_config({"app": [backend.port]}, routes, manager={"retry_buffer_limit": "1KiB"})
    with run_mecha(tmp_path, config) as mecha:
        backend.fail_next(1, 503)
        assert request(mecha, "POST", "/echo", body=b"y" * 4096)[0] == 503
        assert backend.count == 1


def test_outlier_detection_ejects_a_failing_endpoint(tmp_path: Path) -> None:
    with ExitStack() as stack:
        good = stack.enter_context(http_backend("good"))
        bad = stack.enter_context(http_backend("bad"))
        bad.fail_next(1000, 500)
        options = {"app": {"outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "30s",
                                                  "max_ejection_percent": 50}}}  # fmt: skip
        config = http_config({"app": [good.port, bad.port]}, cluster_options=options)
        mecha = stack.enter_context(run_mecha(tmp_path, config))
        statuses = Counter(request(mecha, "GET", "/")[0] for _ in range(30))
        assert statuses[500] == 3  # three strikes, then only the good endpoint
        assert statuses[200] == 27
        clusters = mecha.json("/clusters?format=json")["clusters"][0]["endpoints"]
        assert {e["address"]: e["ejected"] for e in clusters}[f"127.0.0.1:{bad.port}"] is True


def test_circuit_breaker_max_requests(tmp_path: Path, backend: Backend) -> None:
    options = {"app": {"circuit_breakers": {"max_requests": 1, "max_pending_requests": 1}}}
    with run_mecha(
        tmp_path, http_config({"app": [backend.port]}, cluster_options=options)
    ) as mecha:
        slow = socket.create_connection(("127.0.0.1", mecha.port("http")))
        slow.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        mecha.wait_metric("mecha_cluster_upstream_rq_active", 1, cluster="app")
        status, _, _ = request(mecha, "GET", "/")
        assert status == 503
        assert "UO" in mecha.wait_access_log(1)[-1]
        assert recv_all_until(slow, b"late").startswith(b"HTTP/1.1 200")
        slow.close()


def recv_all_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_websocket_upgrade_is_a_tunnel(tmp_path: Path) -> None:
    from tests.support.peers import tcp_server

    def upgrade_then_echo(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        assert b"upgrade: websocket" in head.lower()
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        while chunk := conn.recv(4096):
            conn.sendall(chunk.upper())

    with (
        tcp_server(upgrade_then_echo) as port,
        run_mecha(tmp_path, http_config({"ws": [port]})) as mecha,
        socket.create_connection(("127.0.0.1", mecha.port("http")), timeout=5) as sock,
    ):
        sock.sendall(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = recv_all_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"frames flow both ways")
        assert recv_all_until(sock, b"WAYS").endswith(b"FRAMES FLOW BOTH WAYS")
        sock.shutdown(socket.SHUT_WR)
        assert is_closed_by_peer(sock)


def test_http2_prior_knowledge_with_curl_and_h2load(tmp_path: Path, backend: Backend) -> None:
    with run_mecha(tmp_path, http_config({"app": [backend.port]})) as mecha:
        url = f"http://127.0.0.1:{mecha.port('http')}/echo"
        result = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-d", "h2 body", url],
                                capture_output=True, timeout=10)  # fmt: skip
        seen = json.loads(result.stdout)
        assert seen["body"] == "h2 body" and seen["headers"]["host"].startswith("127.0.0.1")
        load = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "10", url],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "200 succeeded, 0 failed, 0 errored" in load.stdout, load.stdout
        assert "status codes: 200 2xx" in load.stdout


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello",  # forwarded as bytes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n0\r\n\r\nllo",  # codec
    ],
    ids=["content_length", "chunked"],
)
def test_excess_bytes_after_a_response_do_not_cost_the_response(
    tmp_path: Path, answer: bytes
) -> None:
    """An upstream that writes more than its response in one go: the client gets the
    response, the request is not retried, and that upstream connection is not reused (the
    next request opens another)."""
    from tests.support.peers import tcp_server

    requests: list[bytes] = []

    def sloppy(conn: socket.socket) -> None:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                if not (chunk := conn.recv(4096)):
                    return
                head += chunk
            requests.append(head.split(b"\r\n", 1)[0])
            conn.sendall(answer)

    policy = {"retry_on": "reset,5xx", "num_retries": 2}
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "app", "retry_policy": policy}}]
    with (
        tcp_server(sloppy) as port,
        run_mecha(tmp_path, http_config({"app": [port]}, routes)) as mecha,
    ):
        assert request(mecha, "POST", "/once", body=b"x")[::2] == (200, b"he")
        assert request(mecha, "GET", "/twice")[::2] == (200, b"he")
        assert requests == [b"POST /once HTTP/1.1", b"GET /twice HTTP/1.1"]
        assert "Traceback" not in mecha.logs()


@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_the_route_timeout_on_a_kept_alive_connection(
    tmp_path: Path, backend: Backend, path: str
) -> None:
    """Quick requests, then a slow one, on one connection: the slow one still gets its 504
    at its own deadline (the forwarding path keeps one timer per connection)."""
    config = http1_paths_config(backend.port)
    for listener in config["listeners"]:
        vhost = listener["filters"][0]["config"]["route_config"]["virtual_hosts"][0]
        vhost["routes"][0]["route"]["timeout"] = "300ms"
    with run_mecha(tmp_path, config) as mecha:
        connection = http.client.HTTPConnection("127.0.0.1", mecha.port(path), timeout=10)
        for _ in range(5):
            connection.request("GET", "/echo")
            response = connection.getresponse()
            assert response.status == 200 and response.read()
        started = time.monotonic()
        connection.request("GET", "/delay/3000")
        response = connection.getresponse()
        elapsed = time.monotonic() - started
        assert response.status == 504 and b"upstream request timeout" in response.read()
        assert 0.25 < elapsed < 1.5, elapsed
        connection.request("GET", "/echo")  # the connection goes on after a 504
        assert connection.getresponse().status == 200
        connection.close()
        assert sum(" UT " in line for line in mecha.wait_access_log(7)) == 1


def test_a_long_pipeline_of_local_answers(tmp_path: Path) -> None:
    """3,000 pipelined requests, each answered at once (a direct response): all answered in
    order, in one connection, without a recursion as deep as the pipeline."""
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "ok"}}]
    count = 3000
    with run_mecha(tmp_path, http_config({"app": [free_port()]}, routes)) as mecha:
        with socket.create_connection(("127.0.0.1", mecha.port("http")), timeout=10) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n" * count)
            received = b""
            while received.count(b"HTTP/1.1 200") < count:
                chunk = sock.recv(1 << 16)
                assert chunk, f"closed after {received.count(b'HTTP/1.1 200')} answers"
                received += chunk
        assert "Traceback" not in mecha.logs()
