"""Tell which protocol a client speaks from the first bytes it sends (sans-IO).

`detect(prefix)` answers a protocol name, UNKNOWN when no rule can ever match, or
NEED_MORE while a rule could still match with more bytes. Rules look only at what each
protocol must send first: HTTP/2's preface, an HTTP/1 request line, a RESP array, an
MQTT CONNECT, a msgpack-RPC message, a TLS handshake record. Protocols where the server
speaks first (SMTP, MySQL) send nothing, so a sniffer falls back after its timeout.
"""

from __future__ import annotations

import re

from protocols.rpc import CODECS
from protocols.tls_hello import looks_like_tls

HTTP1 = "http1"
HTTP2 = "http2"
REDIS = "redis"
MQTT = "mqtt"
TLS = "tls"
MSGPACK_RPC = "msgpack_rpc"
PROTOCOLS = (HTTP1, HTTP2, REDIS, MQTT, TLS, MSGPACK_RPC)
NEED_MORE = "need_more"
UNKNOWN = "unknown"

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_METHOD = re.compile(rb"[A-Z]{3,12} ")
_METHOD_PREFIX = re.compile(rb"[A-Z]{0,12}")
_RESP_ARRAY = re.compile(rb"\*[0-9]{1,10}\r\n\$")
_RESP_PREFIX = re.compile(rb"\*[0-9]{0,10}(\r(\n\$?)?)?")


def detect(prefix: bytes) -> str:
    if not prefix:
        return NEED_MORE
    verdicts = (_tls(prefix), _http2(prefix), _http1(prefix), _redis(prefix), _mqtt(prefix),
                _msgpack_rpc(prefix))  # fmt: skip
    for verdict in verdicts:
        if verdict not in (UNKNOWN, NEED_MORE):
            return verdict
    return NEED_MORE if NEED_MORE in verdicts else UNKNOWN


def _tls(prefix: bytes) -> str:
    verdict = looks_like_tls(prefix)
    return NEED_MORE if verdict is None else TLS if verdict else UNKNOWN


def _http2(prefix: bytes) -> str:
    if prefix.startswith(H2_PREFACE):
        return HTTP2
    return NEED_MORE if H2_PREFACE.startswith(prefix) else UNKNOWN


def _http1(prefix: bytes) -> str:
    if _METHOD.match(prefix) and not prefix.startswith(b"PRI "):
        return HTTP1
    head = prefix[:13]
    return NEED_MORE if _METHOD_PREFIX.fullmatch(head) and len(prefix) < 13 else UNKNOWN


def _redis(prefix: bytes) -> str:
    if _RESP_ARRAY.match(prefix):
        return REDIS
    return NEED_MORE if _RESP_PREFIX.fullmatch(prefix) else UNKNOWN


def _mqtt(prefix: bytes) -> str:
    """CONNECT (0x10), a remaining length, then the protocol name "MQTT" (or 3.1's MQIsdp)."""
    if prefix[0] != 0x10:
        return UNKNOWN
    index = 1
    while index < len(prefix) and index <= 4 and prefix[index] & 0x80:
        index += 1
    if index > 4:
        return UNKNOWN
    name = prefix[index + 1 :]
    for expected in (b"\x00\x04MQTT", b"\x00\x06MQIsdp"):
        if name.startswith(expected):
            return MQTT
        if expected.startswith(name):
            return NEED_MORE
    return UNKNOWN


def _msgpack_rpc(prefix: bytes) -> str:
    verdict = CODECS["msgpack_rpc"].sniff(prefix)
    return NEED_MORE if verdict is None else MSGPACK_RPC if verdict else UNKNOWN
