"""The application runtime: components by name, the app channel, subscriptions.

Built once per process from the `runtime:` config and shared by the HTTP and gRPC APIs.
Only the components scoped to this app id load. Secret stores start first, so other
components' `secretKeyRef` metadata can be resolved; a component that fails to start stops
mecha's start-up with one RuntimeStartError naming the component, its declaration and the
reason (a metadata key, for bad metadata), unless it has `ignore_errors` (Dapr's
`ignoreErrors`): then a warning, and the runtime runs without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from proxy.config.model import CircuitBreakers, ClusterConfig, EndpointConfig
from proxy.config.units import Address
from proxy.redact import redact_text
from proxy.upstream.cluster import ClusterManager
from runtime.app_channel import AppChannel
from runtime.components import registry
from runtime.components.api import (
    ConfigurationStore,
    InputBinding,
    LockStore,
    OutputBinding,
    PubSub,
    SecretStore,
    Sequencer,
    StateStore,
)
from runtime.components.errors import ComponentError
from runtime.config import ComponentSpec, RuntimeConfig, SecretRef

log = logging.getLogger("mecha.runtime")

APP_CLUSTER = "dapr-app"
VERSION = "mecha-0.1.0"
T = TypeVar("T")


def app_cluster(config: RuntimeConfig) -> ClusterConfig:
    """The app channel's cluster: HTTP/2 without TLS for gRPC and h2c apps; at most
    `app_max_concurrency` requests at once (Dapr's --app-max-concurrency), the rest pending."""
    assert config.app_port
    address = Address(config.app_host, config.app_port)
    protocol = "http2" if config.app_protocol in ("grpc", "h2c") else "http1"
    breakers = CircuitBreakers()
    if config.app_max_concurrency:
        breakers = CircuitBreakers(max_requests=config.app_max_concurrency)
    return ClusterConfig(APP_CLUSTER, (EndpointConfig(address),), connect_timeout=2.0,
                         protocol=protocol, circuit_breakers=breakers)  # fmt: skip


class RuntimeStartError(Exception):
    """Something the runtime's config declares could not start; the message, one line,
    names it and where it is declared."""


class UnknownComponent(Exception):
    def __init__(self, block: str, name: str) -> None:
        super().__init__(f"{block} {name!r} is not found")
        self.block = block
        self.name = name


@dataclass
class LoadedComponent:
    spec: ComponentSpec
    instance: Any
    ready: bool = False
    error: str | None = None
    capabilities: list[str] = field(default_factory=list)


class Runtime:
    def __init__(self, config: RuntimeConfig, clusters: ClusterManager) -> None:
        self.config = config
        self.clusters = clusters
        self.components: dict[str, LoadedComponent] = {}
        self.extended_metadata: dict[str, str] = {}
        self.resolved_secrets: set[str] = set()
        """Values `secretKeyRef`s resolved to: the admin's /config_dump never shows them."""
        self.app: AppChannel | None = None
        self.outbound_ready = False
        self.on_shutdown: Callable[[], None] = lambda: None
        if config.app_port:
            cluster = clusters.add(app_cluster(config))
            self.app = AppChannel(cluster, config.app_token)
        from runtime.delivery import Delivery  # the delivery needs the finished runtime

        self.delivery = Delivery(self)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for spec in self.config.components:
            if not spec.serves(self.config.app_id):
                log.info("component %r is scoped to %s: not loaded for app %r",
                         spec.name, ", ".join(spec.scopes), self.config.app_id)  # fmt: skip
        for spec in self.config.scoped_components():
            await self._start_component(spec)
        self.outbound_ready = True
        await self.delivery.start()

    async def _start_component(self, spec: ComponentSpec) -> None:
        self.components[spec.name] = await self.load_component(spec)

    async def load_component(self, spec: ComponentSpec) -> LoadedComponent:
        """Create and init a component without registering it (a reload swaps it in later);
        RuntimeStartError when it failed and may not be ignored."""
        loaded = LoadedComponent(spec, registry.create(spec.type))
        try:
            metadata = await self._resolve(spec)
            async with asyncio.timeout(spec.init_timeout):
                await loaded.instance.init(metadata)
        except Exception as error:  # whatever a backend raises, the operator gets one line
            # What a backend says may quote its URL or a secret it was given.
            loaded.error = redact_text(_reason(error, spec), self.resolved_secrets)
            await _close_quietly(loaded)
            message = f"component {spec.name!r} ({spec.type}, {spec.source}) failed to start: "
            if spec.ignore_errors:
                log.warning("%s%s; ignored (ignoreErrors)", message, loaded.error)
                return loaded
            raise RuntimeStartError(message + loaded.error) from None
        loaded.ready = True
        loaded.capabilities = _capabilities(loaded.instance)
        log.info("component %r (%s) ready", spec.name, spec.type)
        return loaded

    async def _resolve(self, spec: ComponentSpec) -> dict[str, str]:
        resolved: dict[str, str] = {}
        for key, value in spec.metadata.items():
            resolved[key] = value if isinstance(value, str) else await self._secret(value)
        if spec.block == "pubsub":
            # As Dapr: a pub/sub's consumer identity defaults to the app id, so replicas of
            # one app share durable groups and sessions across restarts.
            resolved.setdefault("consumerID", self.config.app_id)
        return resolved

    async def _secret(self, ref: SecretRef) -> str:
        stores = [c for c in self.components.values() if c.spec.block == "secretstores" and c.ready]
        if ref.store is not None:
            store = self.components.get(ref.store)
        elif len(stores) == 1:
            store = stores[0]
        else:
            raise UnknownComponent("secret store", "(set auth.secretStore: several or none loaded)")
        if store is None or not store.ready:
            raise UnknownComponent("secret store", ref.store or "")
        values = await store.instance.get(ref.name, {})
        if ref.key not in values:
            raise ComponentError(f"secret {ref.name!r} has no key {ref.key!r}", retryable=False)
        value = str(values[ref.key])
        self.resolved_secrets.add(value)
        return value

    async def stop(self) -> None:
        await self.delivery.stop()
        for loaded in reversed(list(self.components.values())):
            if loaded.ready:
                try:
                    await loaded.instance.close()
                except Exception:  # a component must not stop the others from closing
                    log.exception("component %r failed to close", loaded.spec.name)

    async def outbound_healthy(self) -> str | None:
        """None when every component answers its ping, else what is wrong."""
        if not self.outbound_ready:
            return "components are still starting"
        for loaded in self.components.values():
            if loaded.ready:
                try:
                    async with asyncio.timeout(2.0):
                        await loaded.instance.ping()
                except (ComponentError, TimeoutError) as error:
                    return f"{loaded.spec.name}: {error or 'ping timed out'}"
        return None

    # -- lookups --------------------------------------------------------------------------------

    def _get(self, block: str, name: str, kind: type[T]) -> T:
        loaded = self.components.get(name)
        if loaded is None or not loaded.ready or loaded.spec.block != block:
            raise UnknownComponent(block, name)
        instance: T = loaded.instance
        return instance

    def state(self, name: str) -> StateStore:
        return self._get("state", name, StateStore)  # type: ignore[type-abstract]

    def pubsub(self, name: str) -> PubSub:
        return self._get("pubsub", name, PubSub)  # type: ignore[type-abstract]

    def lock(self, name: str) -> LockStore:
        return self._get("lock", name, LockStore)  # type: ignore[type-abstract]

    def sequencer(self, name: str) -> Sequencer:
        return self._get("sequencer", name, Sequencer)  # type: ignore[type-abstract]

    def configuration(self, name: str) -> ConfigurationStore:
        return self._get("configuration", name, ConfigurationStore)  # type: ignore[type-abstract]

    def secrets(self, name: str) -> SecretStore:
        return self._get("secretstores", name, SecretStore)  # type: ignore[type-abstract]

    def output_binding(self, name: str) -> OutputBinding:
        binding: Any = self._get("bindings", name, OutputBinding)  # type: ignore[type-abstract]
        if not hasattr(binding, "invoke"):
            raise UnknownComponent("output binding", name)
        result: OutputBinding = binding
        return result

    def input_bindings(self) -> list[tuple[str, InputBinding]]:
        return [
            (name, loaded.instance)
            for name, loaded in self.components.items()
            if loaded.ready and loaded.spec.block == "bindings" and hasattr(loaded.instance, "read")
        ]

    def key_prefix(self, store: str) -> str:
        """Dapr's state key scheme, `<prefix>||<key>`, where the store's `keyPrefix` metadata
        picks the prefix: `appid` (the default), `name` (the store's), `none`, or a literal."""
        loaded = self.components.get(store)
        choice = loaded.spec.metadata.get("keyPrefix", "appid") if loaded else "appid"
        if choice == "appid" or not isinstance(choice, str):
            return f"{self.config.app_id}||"
        if choice == "name":
            return f"{store}||"
        return "" if choice == "none" else f"{choice}||"


def _reason(error: Exception, spec: ComponentSpec) -> str:
    """Why init failed, in one line; an unexpected exception keeps its traceback for -l debug."""
    if isinstance(error, TimeoutError):
        return f"init timed out after {spec.init_timeout:g}s"
    if isinstance(error, ComponentError | UnknownComponent):
        return str(error)
    log.debug("component %r init raised", spec.name, exc_info=error)
    return f"{type(error).__name__}: {error}"


async def _close_quietly(loaded: LoadedComponent) -> None:
    """Release what a failed init may have opened (a pool, a socket, a task)."""
    try:
        await loaded.instance.close()
    except Exception as error:  # a half-made component may fail to close, too
        log.debug("component %r failed to close after a failed init: %r", loaded.spec.name, error)


def _capabilities(instance: Any) -> list[str]:
    features = getattr(instance, "features", None)
    if features is None:
        return []
    return [flag.name for flag in type(features) if flag.name and flag.value and flag in features]
