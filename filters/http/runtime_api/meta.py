"""`/v1.0/metadata`, `/v1.0/healthz`, `/v1.0/healthz/outbound` and `/v1.0/shutdown`."""

from __future__ import annotations

import asyncio
from typing import Any

from filters.http.runtime_api.base import NO_CONTENT, Answer, ApiError, ApiRequest, json_answer
from runtime.runtime import VERSION, Runtime


async def metadata(runtime: Runtime, request: ApiRequest) -> Answer:
    return json_answer(metadata_view(runtime))


def metadata_view(runtime: Runtime) -> dict[str, Any]:
    """Dapr's metadata document (JSON names); the gRPC GetMetadata answers the same."""
    config = runtime.config
    components = [
        {
            "name": name,
            "type": loaded.spec.type,
            "version": loaded.spec.version,
            "capabilities": loaded.capabilities,
        }
        for name, loaded in runtime.components.items()
        if loaded.ready
    ]
    answer: dict[str, Any] = {
        "id": config.app_id,
        "runtimeVersion": VERSION,
        "enabledFeatures": [],
        "actors": [],
        "components": components,
        "extended": runtime.extended_metadata,
        "subscriptions": [
            _subscription(active.spec, active.kind) for active in runtime.delivery.subscriptions
        ],
        "httpEndpoints": [],
    }
    if config.app_port:
        answer["appConnectionProperties"] = {
            "port": config.app_port,
            "protocol": config.app_protocol,
            "channelAddress": config.app_host,
        }
    return answer


def _subscription(spec: Any, kind: str) -> dict[str, Any]:
    rules = [{"match": match, "path": path} for match, path in spec.rules]
    if spec.route:
        rules.append({"match": "", "path": spec.route})
    entry: dict[str, Any] = {
        "pubsubname": spec.pubsub,
        "topic": spec.topic,
        "metadata": spec.metadata,
        "rules": {"rules": rules},
        "type": kind,
    }
    if spec.dead_letter_topic:
        entry["deadLetterTopic"] = spec.dead_letter_topic
    return entry


async def set_metadata(runtime: Runtime, request: ApiRequest, key: str) -> Answer:
    runtime.extended_metadata[key] = request.body.decode("utf-8", "replace")
    return NO_CONTENT


async def healthz(runtime: Runtime, request: ApiRequest) -> Answer:
    if not runtime.outbound_ready:
        raise ApiError(500, "ERR_HEALTH_NOT_READY", "dapr is not ready")
    return NO_CONTENT


async def healthz_outbound(runtime: Runtime, request: ApiRequest) -> Answer:
    problem = await runtime.outbound_healthy()
    if problem is not None:
        raise ApiError(
            500, "ERR_OUTBOUND_HEALTH_NOT_READY", f"dapr outbound is not ready: {problem}"
        )
    return NO_CONTENT


async def shutdown(runtime: Runtime, request: ApiRequest) -> Answer:
    # After the answer is on its way: the shutdown drains this very connection.
    asyncio.get_running_loop().call_soon(runtime.on_shutdown)
    return NO_CONTENT
