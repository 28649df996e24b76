"""`/v1.0/configuration/{store}`: get, subscribe (updates are POSTed to the app's
`/configuration/{store}/{key}`) and unsubscribe; the `v1.0-alpha1` paths are the same."""

from __future__ import annotations

from filters.http.runtime_api.base import Answer, ApiError, ApiRequest, Block, json_answer, lookup
from runtime.components.api import ConfigurationItem, ConfigurationStore
from runtime.components.errors import ComponentError
from runtime.runtime import Runtime, UnknownComponent

CONFIGURATION = Block(
    "configuration",
    (500, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", "configuration store is not configured"),
    (400, "ERR_CONFIGURATION_STORE_NOT_FOUND", "configuration store {} not found"),
)


def config_store(runtime: Runtime, name: str) -> ConfigurationStore:
    return lookup(runtime, CONFIGURATION, runtime.configuration, name)


async def get_items(store: ConfigurationStore, name: str, keys: list[str],
                    metadata: dict[str, str]) -> dict[str, ConfigurationItem]:  # fmt: skip
    """Shared with the gRPC API's GetConfiguration."""
    try:
        return await store.get(keys, metadata)
    except ComponentError as error:
        raise ApiError(
            500,
            "ERR_CONFIGURATION_GET",
            f"failed to get {keys} from Configuration store {name}: {error}",
        ) from None


async def get(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    store = config_store(runtime, name)
    items = await get_items(store, name, request.values("key"), request.metadata())
    return json_answer(
        {
            key: {"value": item.value, "version": item.version, "metadata": dict(item.metadata)}
            for key, item in items.items()
        }
    )


async def subscribe(runtime: Runtime, request: ApiRequest, name: str) -> Answer:
    config_store(runtime, name)
    try:
        subscription_id = await runtime.delivery.subscribe_configuration(
            name, request.values("key"), request.metadata()
        )
    except (ComponentError, UnknownComponent) as error:
        raise ApiError(
            500,
            "ERR_CONFIGURATION_SUBSCRIBE",
            f"failed to subscribe {request.values('key')} from Configuration store {name}: {error}",
        ) from None
    return json_answer({"id": subscription_id})


async def unsubscribe(
    runtime: Runtime, request: ApiRequest, name: str, subscription: str
) -> Answer:
    config_store(runtime, name)
    if not await runtime.delivery.unsubscribe_configuration(subscription):
        raise ApiError(
            500,
            "ERR_CONFIGURATION_UNSUBSCRIBE",
            f"failed to unsubscribe subscription {subscription}: not found",
        )
    return json_answer({"ok": True})
