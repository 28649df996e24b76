"""GetMetadata, SetMetadata and Shutdown over gRPC."""

from __future__ import annotations

import asyncio

from dapr.proto.runtime.v1 import dapr_pb2, metadata_pb2
from google.protobuf import empty_pb2

from filters.http.runtime_api.meta import metadata_view
from filters.http.runtime_grpc.context import Context

SUBSCRIPTION_TYPES = {
    "DECLARATIVE": metadata_pb2.PubsubSubscriptionType.DECLARATIVE,
    "PROGRAMMATIC": metadata_pb2.PubsubSubscriptionType.PROGRAMMATIC,
    "STREAMING": metadata_pb2.PubsubSubscriptionType.STREAMING,
}


async def get_metadata(
    ctx: Context, request: metadata_pb2.GetMetadataRequest
) -> metadata_pb2.GetMetadataResponse:
    """The HTTP API's metadata document, in the protobuf's shape."""
    view = metadata_view(ctx.runtime)
    answer = metadata_pb2.GetMetadataResponse(
        id=view["id"],
        runtime_version=view["runtimeVersion"],
        enabled_features=view["enabledFeatures"],
        extended_metadata=view["extended"],
    )
    for component in view["components"]:
        answer.registered_components.add(
            name=component["name"],
            type=component["type"],
            version=component["version"],
            capabilities=component["capabilities"],
        )
    for entry in view["subscriptions"]:
        subscription = answer.subscriptions.add(
            pubsub_name=entry["pubsubname"],
            topic=entry["topic"],
            metadata=entry["metadata"],
            dead_letter_topic=entry.get("deadLetterTopic", ""),
            type=SUBSCRIPTION_TYPES.get(entry["type"], metadata_pb2.PubsubSubscriptionType.UNKNOWN),
        )
        for rule in entry["rules"]["rules"]:
            subscription.rules.rules.add(match=rule["match"], path=rule["path"])
    app = view.get("appConnectionProperties")
    if app is not None:
        answer.app_connection_properties.port = app["port"]
        answer.app_connection_properties.protocol = app["protocol"]
        answer.app_connection_properties.channel_address = app["channelAddress"]
    return answer


async def set_metadata(ctx: Context, request: metadata_pb2.SetMetadataRequest) -> empty_pb2.Empty:
    ctx.runtime.extended_metadata[request.key] = request.value
    return empty_pb2.Empty()


async def shutdown(ctx: Context, request: dapr_pb2.ShutdownRequest) -> empty_pb2.Empty:
    # After the answer is on its way: the shutdown drains this very connection.
    asyncio.get_running_loop().call_soon(ctx.runtime.on_shutdown)
    return empty_pb2.Empty()
