"""TLS termination (SNI, ALPN, HTTP/2), origination to TLS upstreams and mTLS between two
mechas, with a CA and certificates minted by the test. Failed handshakes close just their
connection, are logged and counted."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.certs import Issued, TestCA
from tests.support.grpc_backend import SERVICE, grpc_backend
from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http_config, run_mecha
from tests.support.net import is_closed_by_peer, recv_all

pytestmark = pytest.mark.integration

HANDSHAKE_ERRORS = "mecha_listener_ssl_handshake_error_total"
UPSTREAM_HANDSHAKE_ERRORS = "mecha_cluster_upstream_cx_ssl_handshake_error_total"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One CA for everything, a second one nobody here trusts, and their certificates."""
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = TestCA(directory / "ca"), TestCA(directory / "rogue", "rogue CA")
    return {
        "ca": ca,
        "rogue": rogue,
        "a": ca.issue("a.test", dns=("a.test",)),
        "b": ca.issue("b.test", dns=("b.test",)),
        "upstream": ca.issue("upstream.test", dns=("upstream.test",)),
        "mesh": ca.issue("mesh.test", dns=("mesh.test",)),
        "client": ca.issue("client.mesh", client=True),
        "rogue-client": rogue.issue("client.rogue", client=True),
    }


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    with http_backend("a") as a, http_backend("b") as b:
        yield a, b


def tls_block(issued: Issued, **extra: Any) -> dict[str, Any]:
    return {"cert_file": str(issued.cert), "key_file": str(issued.key), **extra}


def sni_config(pki: dict[str, Any], backends: tuple[Backend, Backend]) -> dict[str, Any]:
    """One port, two certificates: the ClientHello's server name picks the chain."""
    config = http_config({"a": [backends[0].port], "b": [backends[1].port]})
    listener = config["listeners"][0]
    del listener["filters"]
    listener["listener_filters"] = [{"name": "tls_inspector"}]
    listener["filter_chains"] = [
        {"name": name, "match": {"server_names": [f"{name}.test"]},
         "filters": [http_filter_to(name)], "tls": tls_block(pki[name])}
        for name in ("a", "b")
    ]  # fmt: skip
    return config


def http_filter_to(cluster: str) -> dict[str, Any]:
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
    virtual_host = {"name": cluster, "domains": ["*"], "routes": [route]}
    return {"name": "http", "config": {"route_config": {"virtual_hosts": [virtual_host]}}}


def client_context(
    ca: TestCA | None, cert: Issued | None = None, alpn: tuple[str, ...] = ()
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert) if ca else None)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


@contextlib.contextmanager
def tls_connection(port: int, server_name: str, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            yield tls
    finally:
        raw.close()


def get(tls: ssl.SSLSocket, path: str, host: str, close: bool = True) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on an open TLS connection; keeps it open unless `close`."""
    connection = b"close" if close else b"keep-alive"
    tls.sendall(b"GET %s HTTP/1.1\r\nhost: %s\r\nconnection: %s\r\n\r\n"
                % (path.encode(), host.encode(), connection))  # fmt: skip
    data = recv_all(tls) if close else _one_response(tls)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _one_response(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))  # fmt: skip
    while len(body) < length:
        body += tls.recv(65536)
    return data


def common_name(tls: ssl.SSLSocket) -> str:
    subject = dict(pair[0] for pair in (tls.getpeercert() or {})["subject"])  # type: ignore[misc]
    return str(subject["commonName"])


def curl(*args: str) -> str:
    done = subprocess.run(["curl", "-sS", "--max-time", "10", *args],
                          capture_output=True, check=True, timeout=15)  # fmt: skip
    return done.stdout.decode()


# -- termination ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sni_mecha(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any],
    backends: tuple[Backend, Backend],
) -> Iterator[Mecha]:  # fmt: skip
    """Chains a.test and b.test, and a's again as the default for clients without SNI."""
    config = sni_config(pki, backends)
    chains = config["listeners"][0]["filter_chains"]
    default = {key: value for key, value in chains[0].items() if key != "match"}
    chains.append({**default, "name": "default"})
    with run_mecha(tmp_path_factory.mktemp("sni"), config) as mecha:
        yield mecha


def test_sni_picks_the_chain_and_its_certificate(sni_mecha: Mecha, pki: dict[str, Any]) -> None:
    context = client_context(pki["ca"])
    port = sni_mecha.port("http")
    for name in ("a", "b"):
        with tls_connection(port, f"{name}.test", context) as tls:
            assert common_name(tls) == f"{name}.test"
            assert get(tls, "/", f"{name}.test") == (200, f"hello from {name}".encode())
    with tls_connection(port, "a.test", context) as tls:
        status, body = get(tls, "/echo", "a.test")
    headers = json.loads(body)["headers"]
    assert (status, headers["x-forwarded-proto"]) == (200, "https")
    assert sni_mecha.metric(HANDSHAKE_ERRORS, listener="http") == 0


def test_alpn_negotiates_h2_and_the_manager_speaks_http2(
    sni_mecha: Mecha, pki: dict[str, Any]
) -> None:
    port = sni_mecha.port("http")
    for offer, expected in ((("h2", "http/1.1"), "h2"), (("http/1.1",), "http/1.1")):
        with tls_connection(port, "a.test", client_context(pki["ca"], alpn=offer)) as tls:
            assert tls.selected_alpn_protocol() == expected
    base = ["--cacert", str(pki["ca"].cert), "--resolve", f"b.test:{port}:127.0.0.1",
            "-w", "\n%{http_version}", f"https://b.test:{port}/alpn"]  # fmt: skip
    assert curl("--http2", *base).splitlines() == ["hello from b", "2"]
    assert curl("--http1.1", *base).splitlines() == ["hello from b", "1.1"]
    deadline = time.monotonic() + 5
    while len(lines := [li for li in sni_mecha.access_log() if "/alpn" in li]) < 2:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    assert any('"GET /alpn HTTP/2"' in line for line in lines), lines
    assert any('"GET /alpn HTTP/1.1"' in line for line in lines), lines


def test_h2load_over_tls(sni_mecha: Mecha) -> None:
    url = f"https://127.0.0.1:{sni_mecha.port('http')}/"  # no SNI: the default chain
    done = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "8", url],
                          capture_output=True, timeout=30, check=True)  # fmt: skip
    report = done.stdout.decode()
    assert "Application protocol: h2" in report, report
    assert "200 succeeded, 0 failed, 0 errored" in report, report
    assert "status codes: 200 2xx" in report, report
    # h2load ends with close_notify: TLS has no half-close, and mecha must not pretend it does.
    assert "eof_received" not in sni_mecha.logs()


# -- failed downstream handshakes -------------------------------------------------------------


def test_failed_handshakes_close_only_their_connection(
    tmp_path: Path, pki: dict[str, Any], backends: tuple[Backend, Backend]
) -> None:
    config = http_config({"a": [backends[0].port]})
    config["listeners"][0]["tls"] = tls_block(pki["a"], handshake_timeout="300ms")
    with run_mecha(tmp_path, config) as mecha:
        port = mecha.port("http")
        with tls_connection(port, "a.test", client_context(pki["ca"])) as kept:
            assert get(kept, "/", "a.test", close=False)[0] == 200
            with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
                assert is_closed_by_peer(silent, timeout=3)  # no ClientHello in time
            with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
                plain.sendall(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
                assert recv_all(plain) == b""
            distrustful = client_context(pki["rogue"])  # a client that does not trust mecha
            with (
                pytest.raises(ssl.SSLCertVerificationError),
                tls_connection(port, "a.test", distrustful),
            ):
                pass
            mecha.wait_metric(HANDSHAKE_ERRORS, 3, listener="http")
            assert get(kept, "/", "a.test") == (200, b"hello from a")
        logs = mecha.logs()
        assert "TLS handshake with 127.0.0.1:" in logs
        assert "failed: http request" in logs  # OpenSSL's reason for plain HTTP
        assert "failed: tlsv1 alert unknown ca" in logs
        assert "failed: SSL handshake is taking longer than 0.3 seconds" in logs
        mecha.wait_metric("mecha_listener_downstream_cx_active", 0, listener="http")


# -- origination ------------------------------------------------------------------------------


@contextlib.contextmanager
def tls_backend(issued: Issued) -> Iterator[tuple[Backend, list[str | None]]]:
    """An HTTPS backend; the list collects the server names the clients sent."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)

    def record(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    with http_backend("secure", tls=context) as backend:
        yield backend, names


def test_origination_verifies_the_upstream_by_ca_and_sni(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    ca = str(pki["ca"].cert)
    with tls_backend(pki["upstream"]) as (backend, names):
        routes = [{"match": {"prefix": "/wrong"}, "route": {"cluster": "wrong_name"}},
                  {"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]  # fmt: skip
        config = http_config(
            {"secure": [backend.port], "wrong_name": [backend.port]}, routes=routes,
            cluster_options={"secure": {"tls": {"ca_file": ca, "sni": "upstream.test"}},
                             "wrong_name": {"tls": {"ca_file": ca, "sni": "other.test"}}},
        )  # fmt: skip
        with run_mecha(tmp_path, config) as mecha:
            url = f"http://127.0.0.1:{mecha.port('http')}"
            assert curl(f"{url}/echo").startswith('{"method": "GET"')
            assert names == ["upstream.test"]
            failed = curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/wrong")
            assert failed == "503"
            mecha.wait_metric(UPSTREAM_HANDSHAKE_ERRORS, 1, cluster="wrong_name")
            assert curl(f"{url}/").strip() == "hello from secure"
            assert mecha.metric(UPSTREAM_HANDSHAKE_ERRORS, cluster="secure") == 0
            assert "cluster 'wrong_name': TLS handshake with" in mecha.logs()
            assert any(" 503 UF " in line for line in mecha.access_log())


def test_grpc_over_tls_on_both_sides(tmp_path: Path, pki: dict[str, Any]) -> None:
    """A gRPC client over TLS to mecha, mecha over TLS to a grpcio server: both sides need
    ALPN h2 (grpcio refuses TLS without it)."""
    upstream = pki["upstream"]
    with grpc_backend(tls=(upstream.key.read_bytes(), upstream.cert.read_bytes())) as port:
        tls = {"ca_file": str(pki["ca"].cert), "sni": "upstream.test"}
        options = {"grpc": {"protocol": "http2", "tls": tls}}
        config = http_config({"grpc": [port]}, cluster_options=options)
        config["listeners"][0]["tls"] = tls_block(pki["mesh"])
        with run_mecha(tmp_path, config) as mecha:
            credentials = grpc.ssl_channel_credentials(pki["ca"].cert.read_bytes())
            target = f"127.0.0.1:{mecha.port('http')}"
            override = [("grpc.ssl_target_name_override", "mesh.test")]
            with grpc.secure_channel(target, credentials, override) as channel:
                unary = channel.unary_unary(f"/{SERVICE}/Unary")
                assert unary(b"hi", timeout=10) == b"echo:hi via 127.0.0.1"
            line = mecha.wait_access_log(1)[-1]
            assert '"POST /mecha.test.Echo/Unary HTTP/2" 200' in line, line


# -- mTLS between two mechas ------------------------------------------------------------------


def mtls_server_config(pki: dict[str, Any], backend: Backend) -> dict[str, Any]:
    config = http_config({"app": [backend.port]})
    config["listeners"][0]["tls"] = tls_block(
        pki["mesh"], client_ca_file=str(pki["ca"].cert), require_client_cert=True
    )
    return config


def mtls_client_config(pki: dict[str, Any], port: int) -> dict[str, Any]:
    tls = {"ca_file": str(pki["ca"].cert), "sni": "mesh.test",
           "cert_file": str(pki["client"].cert), "key_file": str(pki["client"].key)}  # fmt: skip
    return http_config({"mesh": [port]}, cluster_options={"mesh": {"tls": tls}})


def test_mtls_between_two_mechas(
    tmp_path: Path, pki: dict[str, Any], backends: tuple[Backend, Backend]
) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    with run_mecha(tmp_path / "server", mtls_server_config(pki, backends[0])) as server:
        port = server.port("http")
        with run_mecha(tmp_path / "client", mtls_client_config(pki, port)) as client:
            url = f"http://127.0.0.1:{client.port('http')}"
            assert curl(f"{url}/").strip() == "hello from a"
            assert curl(f"{url}/").strip() == "hello from a"
        assert server.metric(HANDSHAKE_ERRORS, listener="http") == 0
        refused_without_a_certificate(server, pki)
        refused_with_a_foreign_certificate(server, pki)
        server.wait_metric(HANDSHAKE_ERRORS, 2, listener="http")
        logs = server.logs()
        assert "failed: peer did not return a certificate" in logs
        assert "failed: certificate verify failed" in logs or "unknown ca" in logs, logs


def refused_without_a_certificate(server: Mecha, pki: dict[str, Any]) -> None:
    assert refused(server.port("http"), client_context(pki["ca"]))


def refused_with_a_foreign_certificate(server: Mecha, pki: dict[str, Any]) -> None:
    assert refused(server.port("http"), client_context(pki["ca"], cert=pki["rogue-client"]))


def refused(port: int, context: ssl.SSLContext) -> bool:
    """No response to a request. With TLS 1.3 the server judges the client's certificate
    after the client's handshake is done, so the refusal shows on the first read."""
    try:
        with tls_connection(port, "mesh.test", context) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nhost: mesh.test\r\n\r\n")
            return recv_all(tls) == b""
    except (ssl.SSLError, ConnectionError):
        return True
