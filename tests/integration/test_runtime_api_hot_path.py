"""The runtime API's hot path on a real mecha process: answers made inline (in-memory store)
and from a task (state.redis on a private redis-server) keep HTTP/1.1 order, framing, the
access log and the metrics; a client that leaves mid-request costs no one else an answer."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.mecha import Mecha, run_mecha
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration

APP_ID = "hot"
Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture(scope="module")
def mecha(tmp_path_factory: pytest.TempPathFactory, redis_port: int) -> Iterator[Mecha]:
    on_redis = {"redisHost": f"127.0.0.1:{redis_port}", "timeout": "3s"}
    listener = {
        "name": "api",
        "address": "127.0.0.1:0",
        "filters": [{"name": "runtime_api", "config": {"access_log": "stdout"}}],
    }
    config = {
        "listeners": [listener],
        "clusters": [],
        "runtime": {"app_id": APP_ID, "components": [
            {"name": "memstore", "type": "state.in-memory"},
            {"name": "redisstore", "type": "state.redis", "metadata": on_redis},
        ]},
    }  # fmt: skip
    with run_mecha(tmp_path_factory.mktemp("mecha"), config) as running:
        yield running


def request(method: str, target: str, body: Any = None, close: bool = False) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {target} HTTP/1.1\r\nHost: api\r\n"
    if data:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode() + data


def read_answers(sock: socket.socket, count: int) -> list[Answer]:
    """`count` responses (framed by Content-Length, or none for a 204) as they come."""
    buffer, answers = b"", list[Answer]()
    while len(answers) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            status_line, *lines = buffer[:end].decode("latin-1").split("\r\n")
            fields = dict(line.lower().split(": ", 1) for line in lines)
            size = end + 4 + int(fields.get("content-length", "0"))
            if len(buffer) >= size:
                answers.append((int(status_line.split()[1]), fields, buffer[end + 4 : size]))
                buffer = buffer[size:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} of {count} answers"
        buffer += chunk
    assert buffer == b"", f"bytes after the answers: {buffer!r}"
    return answers


def connect(mecha: Mecha) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", mecha.port("api")), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@pytest.mark.parametrize("store", ["memstore", "redisstore"])
def test_pipelined_requests_are_answered_in_order(mecha: Mecha, store: str) -> None:
    base = f"/v1.0/state/{store}"
    pipelined = [
        request("POST", base, [{"key": "p1", "value": {"n": 1}}, {"key": "p2", "value": "two"}]),
        request("GET", f"{base}/p1"),
        request("GET", f"{base}/p2"),
        request("GET", f"{base}/missing"),
        request("GET", "/v1.0/state/nosuchstore/p1"),
        request("DELETE", f"{base}/p1"),
        request("GET", f"{base}/p1", close=True),
    ]
    with connect(mecha) as sock:
        sock.sendall(b"".join(pipelined))
        answers = read_answers(sock, len(pipelined))
        assert sock.recv(1) == b""  # closed after the last, as it asked
    statuses = [status for status, _, _ in answers]
    assert statuses == [204, 200, 200, 204, 400, 204, 204]
    assert [body for _, _, body in answers[1:3]] == [b'{"n":1}', b'"two"']
    for _, fields, _ in answers[1:3]:
        assert fields["content-type"] == "application/json" and fields["etag"].isdigit()
    assert json.loads(answers[4][2])["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    assert "content-length" not in answers[0][1]  # (a 204 has none)


@pytest.mark.parametrize(
    ("target", "status"),
    [("/v1.0/state/memstore/deep", 204), ("/v1.0/no-such-api", 404)],
    ids=["answered at once", "refused at once"],
)
def test_a_long_pipeline_of_answers_made_at_once(mecha: Mecha, target: str, status: int) -> None:
    """Each answer made in the request's own call ends its exchange, and the connection
    manager starts the next pipelined one from there: 3,000 in one write must not nest 3,000
    deep (a RecursionError, the connection reset)."""
    count = 3000
    with connect(mecha) as sock:
        sock.sendall(request("GET", target) * count + request("GET", target, close=True))
        answers = read_answers(sock, count + 1)
    assert {answer[0] for answer in answers} == {status}


def test_a_body_in_pieces_is_answered_when_it_is_complete(mecha: Mecha) -> None:
    whole = request("POST", "/v1.0/state/memstore", [{"key": "slow", "value": [1, 2, 3]}])
    with connect(mecha) as sock:
        sock.sendall(whole[:-10])
        time.sleep(0.2)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # nothing yet: the body is not all there
        sock.settimeout(10)
        sock.sendall(whole[-10:] + request("GET", "/v1.0/state/memstore/slow"))
        saved, got = read_answers(sock, 2)
    assert saved[0] == 204 and (got[0], got[2]) == (200, b"[1,2,3]")


def test_answers_are_logged_and_counted(mecha: Mecha) -> None:
    before = mecha.metric("mecha_http_requests_total", listener="api", code_class="2xx")
    errors_before = mecha.metric("mecha_http_requests_total", listener="api", code_class="4xx")
    logged = len(mecha.access_log())
    with connect(mecha) as sock:
        sock.sendall(request("GET", "/v1.0/state/memstore/counted?metadata.x=1")
                     + request("GET", "/v1.0/nothing-here"))  # fmt: skip
        answers = read_answers(sock, 2)
    assert [status for status, _, _ in answers] == [204, 404]
    lines = mecha.wait_access_log(logged + 2)[logged:]
    assert '"GET /v1.0/state/memstore/counted?metadata.x=1 HTTP/1.1" 204 ' in lines[0]
    assert '"GET /v1.0/nothing-here HTTP/1.1" 404 ' in lines[1]
    mecha.wait_metric("mecha_http_requests_total", before + 1, listener="api", code_class="2xx")
    mecha.wait_metric(
        "mecha_http_requests_total", errors_before + 1, listener="api", code_class="4xx"
    )


def test_a_client_gone_mid_request_leaves_the_others_their_answers(
    mecha: Mecha, redis_port: int
) -> None:
    """The client of a GET waiting on Redis goes away; Redis answers it later, and that
    answer must not become the next caller's."""
    client = redis.Redis(port=redis_port)
    for key in ("first", "second"):
        client.hset(f"{APP_ID}||{key}", mapping={"data": f'"{key}"', "version": "1"})
    pid = int(client.info("server")["process_id"])
    logged, log_lines = mecha.logs(), len(mecha.access_log())
    with connect(mecha) as other:
        other.sendall(request("GET", "/v1.0/state/redisstore/second"))
        assert read_answers(other, 1)[0][2] == b'"second"'  # (Redis has the script now)
        try:
            signal_process(pid, signal.SIGSTOP)
            with connect(mecha) as gone:
                gone.sendall(request("GET", "/v1.0/state/redisstore/first"))
                time.sleep(0.3)  # its command reaches the (stopped) Redis's socket
            other.sendall(request("GET", "/v1.0/state/redisstore/second"))
            time.sleep(0.3)
        finally:
            signal_process(pid, signal.SIGCONT)
        [(status, _, body)] = read_answers(other, 1)
    assert (status, body) == (200, b'"second"')
    with connect(mecha) as again:
        again.sendall(request("GET", "/v1.0/state/redisstore/first", close=True))
        assert read_answers(again, 1)[0][2] == b'"first"'
    assert mecha.process.poll() is None
    assert "Traceback" not in mecha.logs()[len(logged) :]
    lines = mecha.wait_access_log(log_lines + 4)[log_lines:]
    firsts = [line for line in lines if "redisstore/first" in line]
    assert '" 0 DC ' in firsts[0]  # no answer: the client went away (Envoy's flag)


def signal_process(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)


def chunked(method: str, target: str) -> bytes:
    """The same request with an empty chunked body: the head alone does not answer it, so
    it takes the stream path (a filter instance, the codec)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head.encode() + b"0\r\n\r\n"


TARGETS = [
    "/v1.0/state/memstore/same", "/v1.0/state/memstore/none-such", "/v1.0/state/nosuch/k",
    "/v1.0/state/memstore/same?consistency=x", "/v1.0/metadata", "/v1.0/healthz",
    "/v1.0/no-such-api",
]  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
def test_an_answer_made_from_the_head_is_the_stream_paths(mecha: Mecha, target: str) -> None:
    with connect(mecha) as sock:
        sock.sendall(request("POST", "/v1.0/state/memstore", [{"key": "same", "value": [1]}]))
        assert read_answers(sock, 1)[0][0] == 204
        sock.sendall(request("GET", target) + chunked("GET", target))
        at_once, by_stream = read_answers(sock, 2)
    assert at_once == by_stream
    closing = b"\r\nConnection: close\r\n\r\n"
    raw = []
    for whole in (request("GET", target, close=True),
                  chunked("GET", target).replace(b"\r\n\r\n", closing, 1)):  # fmt: skip
        with connect(mecha) as sock:
            sock.sendall(whole)
            raw.append(read_to_end(sock))
    assert raw[0] == raw[1] and raw[0].startswith(b"HTTP/1.1 ")


def test_reads_answered_from_the_head_and_writes_keep_their_order(mecha: Mecha) -> None:
    """Reads answered at once and writes that take the stream path, interleaved in one
    write: every read sees the write before it."""
    base = "/v1.0/state/memstore"
    pipelined = []
    for n in range(50):
        pipelined += [request("POST", base, [{"key": "order", "value": n}]),
                      request("GET", f"{base}/order")]  # fmt: skip
    with connect(mecha) as sock:
        sock.sendall(b"".join(pipelined))
        answers = read_answers(sock, len(pipelined))
    assert [body for _, _, body in answers[1::2]] == [str(n).encode() for n in range(50)]


def read_to_end(sock: socket.socket) -> bytes:
    received = []
    while chunk := sock.recv(65536):
        received.append(chunk)
    return b"".join(received)


def test_a_read_that_waits_on_redis_runs_once(mecha: Mecha, redis_port: int) -> None:
    """A GET on a store that waits (Redis) is not started from the head and then again by
    the stream path: Redis runs one script per GET."""
    client = redis.Redis(port=redis_port)
    client.hset(f"{APP_ID}||once", mapping={"data": '"one"', "version": "1"})
    with connect(mecha) as sock:  # (once, so Redis has the script)
        sock.sendall(request("GET", "/v1.0/state/redisstore/once"))
        assert read_answers(sock, 1)[0][2] == b'"one"'
    before = scripts_run(client)
    with connect(mecha) as sock:
        sock.sendall(request("GET", "/v1.0/state/redisstore/once") * 10)
        assert {body for _, _, body in read_answers(sock, 10)} == {b'"one"'}
    assert scripts_run(client) - before == 10


def scripts_run(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
