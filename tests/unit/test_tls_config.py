"""`tls:` blocks: SSL contexts built while validating, problems reported by YAML path."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from proxy.config.parse import load_config, parse_config
from proxy.config.reader import ConfigError
from tests.support.certs import Issued, TestCA


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(ca: TestCA) -> Issued:
    return ca.issue("server.test", dns=("server.test",))


def document(listener_tls: Any = None, cluster: dict[str, Any] | None = None,
             codec: str = "auto") -> dict[str, Any]:  # fmt: skip
    routes = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "app"}}]}]}  # fmt: skip
    listener: dict[str, Any] = {
        "name": "https", "address": "127.0.0.1:0",
        "filters": [{"name": "http", "config": {"codec": codec, "route_config": routes}}],
    }  # fmt: skip
    if listener_tls is not None:
        listener["tls"] = listener_tls
    app = {"name": "app", "endpoints": ["127.0.0.1:8080"], **(cluster or {})}
    return {"listeners": [listener], "clusters": [app]}


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    return [str(problem) for problem in caught.value.problems]


def pair(issued: Issued) -> dict[str, str]:
    return {"cert_file": str(issued.cert), "key_file": str(issued.key)}


def test_termination_builds_a_server_context_offering_h2_and_http1(server: Issued) -> None:
    config = parse_config(document(pair(server)))
    tls = config.listeners[0].filter_chains[0].tls
    assert tls is not None and isinstance(tls.context, ssl.SSLContext)
    assert tls.alpn == ("h2", "http/1.1")
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not tls.require_client_cert and tls.context.verify_mode == ssl.CERT_NONE


def test_alpn_follows_the_codec_unless_given(server: Issued) -> None:
    http1 = parse_config(document(pair(server), codec="http1")).listeners[0]
    assert http1.filter_chains[0].tls is not None
    assert http1.filter_chains[0].tls.alpn == ("http/1.1",)
    given = parse_config(document({**pair(server), "alpn": "h2", "min_version": "1.3"}))
    tls = given.listeners[0].filter_chains[0].tls
    assert tls is not None and tls.alpn == ("h2",)
    assert tls.context is not None and tls.context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_a_client_ca_requires_client_certificates(ca: TestCA, server: Issued) -> None:
    config = parse_config(document({**pair(server), "client_ca_file": str(ca.cert)}))
    tls = config.listeners[0].filter_chains[0].tls
    assert tls is not None and tls.require_client_cert
    assert tls.context is not None and tls.context.verify_mode == ssl.CERT_REQUIRED
    optional = {**pair(server), "client_ca_file": str(ca.cert), "require_client_cert": False}
    tls = parse_config(document(optional)).listeners[0].filter_chains[0].tls
    assert tls is not None and tls.context is not None
    assert tls.context.verify_mode == ssl.CERT_OPTIONAL


def test_files_that_cannot_serve_are_config_errors(
    tmp_path: Path, ca: TestCA, server: Issued
) -> None:
    other = ca.issue("other.test", dns=("other.test",))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert problems_of(document({**pair(server), "cert_file": str(tmp_path / "nope.crt")})) == [
        f"listeners[0].tls.cert_file: no such file: {tmp_path / 'nope.crt'}"
    ]
    [mismatch] = problems_of(document({**pair(server), "key_file": str(other.key)}))
    assert mismatch.startswith("listeners[0].tls.cert_file: cannot load the certificate and key")
    assert "key values mismatch" in mismatch
    [bad_ca] = problems_of(document({**pair(server), "client_ca_file": str(garbage)}))
    assert bad_ca.startswith("listeners[0].tls.client_ca_file: cannot load CA certificates from")


def test_inconsistent_blocks_name_their_key(server: Issued) -> None:
    no_ca = {**pair(server), "require_client_cert": True}
    assert problems_of(document(no_ca)) == [
        "listeners[0].tls.require_client_cert: require_client_cert needs client_ca_file to "
        "verify them against"
    ]
    assert problems_of(document({"key_file": str(server.key)})) == [
        "listeners[0].tls.cert_file: required value is missing"
    ]
    [alpn] = problems_of(document({**pair(server), "alpn": [""]}))
    assert alpn.startswith("listeners[0].tls.alpn: expected a protocol name")
    [half] = problems_of(document(cluster={"tls": {"cert_file": str(server.cert)}}))
    assert half == "clusters[0].tls: a client certificate needs both cert_file and key_file"


def test_tls_on_a_listener_with_chains_belongs_on_the_chains(server: Issued) -> None:
    doc = document(pair(server))
    listener = doc["listeners"][0]
    listener["filter_chains"] = [{"name": "all", "filters": listener.pop("filters")}]
    [problem] = problems_of(doc)
    assert problem.startswith("listeners[0].tls: with filter_chains, put tls: on each chain")


def test_origination_verifies_by_ca_with_sni(ca: TestCA) -> None:
    tls_block = {"ca_file": str(ca.cert), "sni": "api.internal"}
    cluster = parse_config(document(cluster={"protocol": "http2", "tls": tls_block})).clusters[0]
    assert cluster.tls is not None and cluster.tls.context is not None
    assert cluster.tls.context.verify_mode == ssl.CERT_REQUIRED
    assert cluster.tls.context.check_hostname
    assert cluster.tls.alpn == ("h2",)
    assert cluster.tls.server_hostname("10.0.0.7", None) == "api.internal"
    unverified = parse_config(document(cluster={"tls": {"verify": False}})).clusters[0].tls
    assert unverified is not None and unverified.context is not None
    assert unverified.context.verify_mode == ssl.CERT_NONE
    assert unverified.server_hostname("10.0.0.7", None) is None
    by_name = parse_config(document(cluster={"tls": {"ca_file": str(ca.cert)}})).clusters[0].tls
    assert by_name is not None and by_name.server_hostname("10.0.0.7", "api.example") == (
        "api.example"
    )


def test_relative_paths_are_read_next_to_the_config_file(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue("server.test", dns=("server.test",))
    path = tmp_path / "mecha.yaml"
    path.write_text(
        "listeners:\n"
        "  - name: https\n    address: 127.0.0.1:0\n"
        f"    tls: {{cert_file: {issued.cert.name}, key_file: {issued.key.name}}}\n"
        "    filters: [{name: tcp_proxy, config: {cluster: app}}]\n"
        "clusters: [{name: app, endpoints: ['127.0.0.1:8080']}]\n"
    )
    tls = load_config(path).listeners[0].filter_chains[0].tls
    assert tls is not None and tls.cert_file == str(issued.cert)
    assert tls.alpn == ()  # tcp_proxy: no ALPN offered
