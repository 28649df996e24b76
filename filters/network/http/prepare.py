"""What the connection manager does to every request head before routing, on both paths
(the stream filters' and the forwarding one): cut hop-by-hop fields, then add the request
id, the W3C trace context and the forwarding fields (Envoy's x-request-id, x-forwarded-for,
x-forwarded-proto)."""

from __future__ import annotations

from collections.abc import Mapping

from filters.network.http.config import HcmConfig
from protocols.http.events import RequestHeaders
from protocols.http.h1_forward import RequestHead, without_fields
from protocols.http.headers import Headers
from protocols.http.ids import new_ids, valid_traceparent
from proxy.stream_info import HttpStreamInfo

# Headers that describe one hop, not the message (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                        b"transfer-encoding", b"upgrade", b"te", b"trailer"})  # fmt: skip
UPGRADE_HEADERS = frozenset((b"connection", b"upgrade"))


def strip_hop_by_hop(headers: Headers, keep_upgrade: bool) -> bool:
    """Drop connection-specific fields, and the fields Connection names; whether any."""
    index = headers.indexed()
    present = HOP_BY_HOP.intersection(index)
    if not present:
        return False
    doomed = set(present - UPGRADE_HEADERS if keep_upgrade else present)
    if b"te" in present and all(v.strip().lower() == b"trailers" for v in index[b"te"]):
        doomed.discard(b"te")  # gRPC needs `te: trailers` end to end
    if b"connection" in present and not keep_upgrade:
        for value in index[b"connection"]:
            for token in value.split(b","):
                token = token.strip().lower()
                # (a hop-by-hop field that is not present has nothing to cut)
                if token and (token in present or token not in HOP_BY_HOP):
                    doomed.add(token)
    removed = False
    for name in doomed:
        removed = headers.remove(name) or removed
    return removed


def _first(index: Mapping[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = index.get(name)
    return values[0] if values else None


def prepare_request(
    request: RequestHeaders, info: HttpStreamInfo, config: HcmConfig, client_ip: bytes, tls: bool
) -> None:
    """Make the head fit for the next hop, and note in `info` what the access log shows."""
    headers = request.headers
    seen = headers.indexed()
    content_type = _first(seen, b"content-type")
    info.grpc = content_type is not None and content_type.startswith(b"application/grpc")
    info.user_agent = _first(seen, b"user-agent")
    if strip_hop_by_hop(headers, keep_upgrade=request.upgrade is not None):
        seen = headers.indexed()  # (Connection may have named some of them)
    if request.expect_continue:
        headers.remove(b"expect")
    request_id = _first(seen, b"x-request-id")
    parent = _first(seen, b"traceparent")
    new_parent = config.generate_traceparent and not (parent and valid_traceparent(parent))
    if new_parent or (config.generate_request_id and not request_id):
        generated_id, traceparent = new_ids()
    added: list[tuple[bytes, bytes]] = []
    if config.generate_request_id:
        if request_id is None:
            added.append((b"x-request-id", generated_id))
        info.request_id = request_id or generated_id
    if config.append_forwarded_for:
        previous = _first(seen, b"x-forwarded-for")
        if previous:
            headers.remove(b"x-forwarded-for")
            forwarded = previous + b", " + client_ip
        else:
            forwarded = client_ip
        added.append((b"x-forwarded-for", forwarded))
        info.forwarded_for = forwarded
        if b"x-forwarded-proto" not in seen:
            added.append((b"x-forwarded-proto", b"https" if tls else request.scheme))
    if new_parent:
        if parent is not None:
            headers.remove(b"traceparent")
        added.append((b"traceparent", traceparent))
    headers.extend(added)


def prepare_forwarded(
    head: RequestHead, info: HttpStreamInfo, config: HcmConfig, client_ip: bytes, tls: bool
) -> bytes:
    """`prepare_request` for a head forwarded as bytes: the same fields with the same values,
    cut from and appended to the raw lines. Returns the head to send upstream."""
    fields = head.fields
    info.user_agent = fields.get(b"user-agent")
    request_id = fields.get(b"x-request-id")
    parent = fields.get(b"traceparent")
    new_parent = config.generate_traceparent and not (parent and valid_traceparent(parent))
    if new_parent or (config.generate_request_id and not request_id):
        generated_id, traceparent = new_ids()
    cut = [b"connection"] if b"connection" in fields else []
    parts = [head.line, b""]  # (the block goes second, once we know what to cut from it)
    if config.generate_request_id:
        if request_id is None:
            parts += (b"x-request-id: ", generated_id, b"\r\n")
        info.request_id = request_id or generated_id
    if config.append_forwarded_for:
        forwarded = client_ip
        previous = fields.get(b"x-forwarded-for")
        if previous:
            cut.append(b"x-forwarded-for")
            forwarded = previous + b", " + client_ip
        parts += (b"x-forwarded-for: ", forwarded, b"\r\n")
        info.forwarded_for = forwarded
        if b"x-forwarded-proto" not in fields:
            parts.append(b"x-forwarded-proto: https\r\n" if tls else b"x-forwarded-proto: http\r\n")
    if new_parent:
        if parent is not None:
            cut.append(b"traceparent")
        parts += (b"traceparent: ", traceparent, b"\r\n")
    parts[1] = without_fields(head.block, head.lowered, cut) if cut else head.block
    parts.append(b"\r\n")
    return b"".join(parts)
