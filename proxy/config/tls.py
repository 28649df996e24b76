"""`tls:` blocks: terminating TLS on a filter chain, originating it to a cluster.

The SSL contexts are built while the config is validated, so a missing file, a bad PEM or a
key that does not match its certificate is a config error naming its YAML path, reported by
`mecha validate` before anything binds.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.reader import Node

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
HTTP_ALPN = ("h2", "http/1.1")


@dataclass(frozen=True, slots=True)
class DownstreamTls:
    """TLS termination on a filter chain (a server context)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    require_client_cert: bool = False
    alpn: tuple[str, ...] = ()
    handshake_timeout: float = 10.0
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """TLS origination to a cluster's endpoints (a client context)."""

    ca_file: str | None = None
    verify: bool = True
    sni: str | None = None
    """Server name sent and verified; default: the endpoint's DNS name, else its IP."""
    cert_file: str | None = None
    key_file: str | None = None
    alpn: tuple[str, ...] = ()
    handshake_timeout: float = 10.0
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def server_hostname(self, host: str, hostname: str | None) -> str | None:
        if self.sni:
            return self.sni
        return (hostname or host) if self.verify else None


def parse_downstream_tls(
    node: Node, base_dir: Path | None, default_alpn: tuple[str, ...]
) -> DownstreamTls | None:
    """`tls:` on a listener or filter chain; `default_alpn` comes from the chain's filters."""
    if node.value is None or not node.expect_mapping():
        return None
    node.only("cert_file", "key_file", "client_ca_file", "require_client_cert", "alpn",
              "min_version", "handshake_timeout")  # fmt: skip
    cert = _file(node, "cert_file", base_dir, required=True)
    key = _file(node, "key_file", base_dir, required=True)
    client_ca = _file(node, "client_ca_file", base_dir)
    require = node.flag("require_client_cert", client_ca is not None)
    if require and client_ca is None:
        node.problem("require_client_cert needs client_ca_file to verify them against",
                     "require_client_cert")  # fmt: skip
    alpn = _alpn(node, default_alpn)
    version = VERSIONS[node.choice("min_version", VERSIONS, "1.2")]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = version
    if cert and key:
        _load_chain(node, context, cert, key)
    if client_ca:
        _load_ca(node, context, client_ca, "client_ca_file")
        context.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return DownstreamTls(
        cert_file=cert or "",
        key_file=key or "",
        client_ca_file=client_ca,
        require_client_cert=require,
        alpn=alpn,
        handshake_timeout=node.duration("handshake_timeout", 10.0, positive=True),
        context=context,
    )


def parse_upstream_tls(
    node: Node, base_dir: Path | None, default_alpn: tuple[str, ...]
) -> UpstreamTls | None:
    """`tls:` on a cluster."""
    if node.value is None or not node.expect_mapping():
        return None
    node.only("ca_file", "verify", "sni", "cert_file", "key_file", "alpn", "min_version",
              "handshake_timeout")  # fmt: skip
    ca = _file(node, "ca_file", base_dir)
    verify = node.flag("verify", True)
    cert = _file(node, "cert_file", base_dir)
    key = _file(node, "key_file", base_dir)
    if node.has("cert_file") != node.has("key_file"):
        node.problem("a client certificate needs both cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = VERSIONS[node.choice("min_version", VERSIONS, "1.2")]
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca:
        _load_ca(node, context, ca, "ca_file")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert and key:
        _load_chain(node, context, cert, key)
    alpn = _alpn(node, default_alpn)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return UpstreamTls(
        ca_file=ca,
        verify=verify,
        sni=node.text("sni") if node.has("sni") else None,
        cert_file=cert,
        key_file=key,
        alpn=alpn,
        handshake_timeout=node.duration("handshake_timeout", 10.0, positive=True),
        context=context,
    )


def _file(node: Node, key: str, base_dir: Path | None, required: bool = False) -> str | None:
    if not node.has(key):
        if required:
            node.problem("required value is missing", key)
        return None
    text = node.text(key)
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        node.problem(f"no such file: {path}", key)
        return None
    return str(path)


def _load_chain(node: Node, context: ssl.SSLContext, cert: str, key: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        node.problem(f"cannot load the certificate and key ({cert}, {key}): {_why(exc)}",
                     "cert_file")  # fmt: skip
    except OSError as exc:
        node.problem(f"cannot read the certificate or key: {exc.strerror or exc}", "cert_file")


def _load_ca(node: Node, context: ssl.SSLContext, path: str, key: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        node.problem(f"cannot load CA certificates from {path}: {_why(exc)}", key)
    except OSError as exc:
        node.problem(f"cannot read {path}: {exc.strerror or exc}", key)


def _alpn(node: Node, default: tuple[str, ...]) -> tuple[str, ...]:
    value = node.child("alpn").value
    if value is None:
        return default
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) < 256
                                              for n in names):  # fmt: skip
        node.problem("expected a protocol name or a list of them (h2, http/1.1, ...)", "alpn")
        return default
    return tuple(names)


def _why(exc: ssl.SSLError) -> str:
    """OpenSSL's reason ('KEY_VALUES_MISMATCH', 'PEM lib', ...) rather than the errno soup."""
    reason = getattr(exc, "reason", None)
    return str(reason or exc.strerror or exc).replace("_", " ").lower()
