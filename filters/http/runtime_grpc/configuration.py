"""GetConfiguration, SubscribeConfiguration and UnsubscribeConfiguration (and Alpha1 names).

SubscribeConfiguration is a server stream: its first message carries the subscription id
(no items), then every change of the watched keys follows, until the client goes away or
UnsubscribeConfiguration (over gRPC or HTTP: the id is registered with the runtime's other
configuration subscriptions) ends the stream with OK.
"""

from __future__ import annotations

import asyncio
import uuid

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import configuration_pb2

from filters.http.runtime_api import configuration as shared
from filters.http.runtime_api.base import ApiError
from filters.http.runtime_grpc.context import Context
from runtime.components.api import ConfigurationItem, Subscription
from runtime.components.errors import ComponentError


def _items(items: dict[str, ConfigurationItem]) -> dict[str, common_pb2.ConfigurationItem]:
    return {
        key: common_pb2.ConfigurationItem(
            value=item.value, version=item.version, metadata=dict(item.metadata)
        )
        for key, item in items.items()
    }


async def get_configuration(
    ctx: Context, request: configuration_pb2.GetConfigurationRequest
) -> configuration_pb2.GetConfigurationResponse:
    name = request.store_name
    store = shared.config_store(ctx.runtime, name)
    items = await shared.get_items(store, name, list(request.keys), dict(request.metadata))
    return configuration_pb2.GetConfigurationResponse(items=_items(items))


class _StreamSubscription:
    """The component's subscription plus the end of the stream it feeds."""

    def __init__(self) -> None:
        self.handle: Subscription | None = None
        self.ended = asyncio.Event()

    async def cancel(self) -> None:
        self.ended.set()
        if self.handle is not None:
            await self.handle.cancel()


async def subscribe_configuration(
    ctx: Context,
    request: configuration_pb2.SubscribeConfigurationRequest,
) -> None:
    name = request.store_name
    store = shared.config_store(ctx.runtime, name)
    keys = list(request.keys)
    call = ctx.call
    subscription_id = str(uuid.uuid4())

    async def changed(items: dict[str, ConfigurationItem]) -> None:
        await call.drain()  # a client that does not read holds the component's watcher
        answer = configuration_pb2.SubscribeConfigurationResponse(
            id=subscription_id, items=_items(items)
        )
        call.send(answer.SerializeToString())

    subscription = _StreamSubscription()
    try:
        subscription.handle = await store.subscribe(keys, changed, dict(request.metadata))
    except ComponentError as error:
        raise ApiError(
            500,
            "ERR_CONFIGURATION_SUBSCRIBE",
            f"failed to subscribe {keys} from Configuration store {name}: {error}",
        ) from None
    registry = ctx.runtime.delivery.configuration
    registry[subscription_id] = subscription
    try:
        call.send(
            configuration_pb2.SubscribeConfigurationResponse(id=subscription_id).SerializeToString()
        )
        await subscription.ended.wait()
    finally:
        if registry.pop(subscription_id, None) is not None:  # ended here, not by Unsubscribe
            await subscription.cancel()


async def unsubscribe_configuration(
    ctx: Context,
    request: configuration_pb2.UnsubscribeConfigurationRequest,
) -> configuration_pb2.UnsubscribeConfigurationResponse:
    shared.config_store(ctx.runtime, request.store_name)
    if not await ctx.runtime.delivery.unsubscribe_configuration(request.id):
        return configuration_pb2.UnsubscribeConfigurationResponse(
            ok=False, message=f"subscription {request.id} not found"
        )
    return configuration_pb2.UnsubscribeConfigurationResponse(ok=True)
