"""Everything the runtime delivers to the app: pub/sub events, input bindings, config updates.

Pub/sub: subscriptions are declarative (config / Subscription files) and programmatic
(the app's `GET /dapr/subscribe`); each event is POSTed to the app's route as a
CloudEvent. The app's answer decides: 2xx with an empty body or {"status": "SUCCESS"}
acknowledges, {"status": "RETRY"} or any other failure leaves the message to the
component's redelivery (at-least-once where the backend keeps that promise), "DROP" or a
404 acknowledges and drops. After `delivery.retries` attempts a message goes to the
subscription's dead-letter topic, if it has one.

An app that speaks gRPC (`app_protocol: grpc`) gets the same deliveries through Dapr's
AppCallback service (runtime/app_callback.py). A streaming subscriber (the gRPC API's
SubscribeTopicEventsAlpha1) is a subscription whose messages go to its stream instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocols import strict_json
from protocols.http.headers import Headers
from runtime import cloudevents
from runtime.app_channel import AppCallError, AppChannel, AppUnavailable
from runtime.components.api import (
    BindingEvent,
    ConfigurationItem,
    InputBinding,
    Message,
    PubSub,
    Subscription,
)
from runtime.components.api import (
    Delivery as Outcome,
)
from runtime.components.errors import ComponentError
from runtime.config import SubscriptionSpec, topic_allowed
from runtime.routing_rules import Rule, RuleError, compile_rule
from runtime.runtime import RuntimeStartError, UnknownComponent

if TYPE_CHECKING:
    from runtime.app_callback import AppCallback
    from runtime.runtime import Runtime

log = logging.getLogger("mecha.delivery")

APP_SUBSCRIBE_WAIT = 10.0


class SubscriptionRefused(Exception):
    """A subscription cannot be made; the message names it and why."""


@dataclass
class ActiveSubscription:
    spec: SubscriptionSpec
    kind: str
    """DECLARATIVE or PROGRAMMATIC (as /v1.0/metadata reports it)."""
    rules: list[tuple[Rule, str]]
    handle: Subscription | None = None
    stream: Callable[[Message], Awaitable[Outcome]] | None = None
    """A streaming subscriber's delivery, instead of the app's."""


class Delivery:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.subscriptions: list[ActiveSubscription] = []
        self.configuration: dict[str, Subscription] = {}
        self._bindings: dict[str, Subscription] = {}
        """Input bindings being read, by component name."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.callback: AppCallback | None = None
        if runtime.app is not None and runtime.config.app_protocol == "grpc":
            from runtime.app_callback import AppCallback  # Dapr's protos, only when needed

            self.callback = AppCallback(runtime.app)

    async def start(self) -> None:
        """Declared subscriptions and input bindings; RuntimeStartError when one cannot be
        made, unless its component may fail (`ignoreErrors`). With `wait_for_app`, they start
        once the app is up, and what cannot be made is logged."""
        app = self.runtime.app
        if self.runtime.config.wait_for_app and app is not None:
            self._spawn(self._start_when_up(app), "wait-for-app")
            return
        await self._start_deliveries()

    async def _start_when_up(self, app: AppChannel) -> None:
        from runtime.app_health import wait_for_app, watch_app

        config = self.runtime.config
        await wait_for_app(app, config)
        await self._start_logged()
        if config.app_health is not None:
            await watch_app(app, config, self._pause, self._start_logged)

    async def _start_logged(self) -> None:
        try:
            await self._start_deliveries()
        except RuntimeStartError as error:
            log.error("%s", error)

    async def _pause(self) -> None:
        """The app is unhealthy: its subscriptions and input bindings stop (a streaming
        subscriber's go on: it is not the app)."""
        paused = [s for s in self.subscriptions if s.stream is None]
        self.subscriptions = [s for s in self.subscriptions if s.stream is not None]
        handles = [s.handle for s in paused if s.handle] + list(self._bindings.values())
        self._bindings.clear()
        for handle in handles:
            try:
                await handle.cancel()
            except ComponentError as error:
                log.warning("stopping a delivery failed: %s", error)

    async def _start_deliveries(self) -> None:
        for spec in self.runtime.config.scoped_subscriptions():
            try:
                await self._subscribe(spec, "DECLARATIVE")
            except SubscriptionRefused as error:
                self._start_failed(spec.pubsub, str(error))
        if self.runtime.app is not None:
            self._spawn(self._programmatic(), "dapr-subscribe")
            for name, binding in self.runtime.input_bindings():
                try:
                    self._bindings[name] = await binding.read(self._binding_handler(name))
                except ComponentError as error:
                    self._start_failed(name, f"input binding {name!r} cannot be read: {error}")

    def _start_failed(self, component: str, message: str) -> None:
        loaded = self.runtime.components.get(component)
        if loaded is not None and loaded.spec.ignore_errors:
            log.warning("%s; ignored (ignoreErrors of %r)", message, component)
            return
        raise RuntimeStartError(message)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        handles = [s.handle for s in self.subscriptions if s.handle]
        handles += self._bindings.values()
        handles += list(self.configuration.values())
        for handle in handles:
            try:
                await handle.cancel()
            except ComponentError as error:
                log.warning("cancelling a subscription failed: %s", error)

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pub/sub ----------------------------------------------------------------------------------

    async def _programmatic(self) -> None:
        """Ask the app for its subscriptions, waiting a while for it to come up."""
        deadline = asyncio.get_running_loop().time() + APP_SUBSCRIBE_WAIT
        while True:
            try:
                specs = await self._app_subscriptions()
                break
            except AppUnavailable:
                if asyncio.get_running_loop().time() > deadline:
                    log.info("app did not tell its subscriptions: no programmatic subscriptions")
                    return
                await asyncio.sleep(0.5)
            except AppCallError as error:
                log.warning("app's ListTopicSubscriptions failed (%s): none taken", error)
                return
        for spec in specs:
            try:
                await self._subscribe(spec, "PROGRAMMATIC")
            except SubscriptionRefused as error:
                log.error("%s", error)

    async def _app_subscriptions(self) -> list[SubscriptionSpec]:
        if self.callback is not None:
            return await self.callback.subscriptions()
        app = self.runtime.app
        assert app is not None
        answer = await app.request("GET", "/dapr/subscribe", timeout=5.0)
        if answer.status == 404:
            return []
        try:
            entries = strict_json.loads(answer.body or b"[]")
        except strict_json.JsonError:
            log.warning("app's /dapr/subscribe is not JSON; ignored")
            return []
        specs = (_from_app(entry) for entry in (entries if isinstance(entries, list) else []))
        return [spec for spec in specs if spec is not None]

    async def _subscribe(self, spec: SubscriptionSpec, kind: str) -> None:
        """Raises SubscriptionRefused."""
        refused = f"subscription to {spec.pubsub}/{spec.topic} ({spec.source}) refused"
        try:
            rules = [(compile_rule(match), path) for match, path in spec.rules]
            pubsub = self.runtime.pubsub(spec.pubsub)
            self._check_topic(spec)
            active = ActiveSubscription(spec, kind, rules)
            metadata = {"consumerGroup": self.runtime.config.app_id, **spec.metadata}
            active.handle = await pubsub.subscribe(spec.topic, self._handler(active), metadata)
        except (RuleError, UnknownComponent, ComponentError) as error:
            raise SubscriptionRefused(f"{refused}: {error}") from None
        self.subscriptions.append(active)
        log.info("subscribed to %s/%s (%s)", spec.pubsub, spec.topic, kind.lower())

    def _check_topic(self, spec: SubscriptionSpec) -> None:
        """The pub/sub's `allowedTopics` and `subscriptionScopes`, as Dapr applies them."""
        app_id = self.runtime.config.app_id
        metadata = self.runtime.components[spec.pubsub].spec.metadata
        if not topic_allowed(metadata, app_id, spec.topic, "subscriptionScopes"):
            raise ComponentError(f"topic {spec.topic!r} is not allowed for app {app_id!r}",
                                 retryable=False)  # fmt: skip

    async def subscribe_stream(self, spec: SubscriptionSpec,
                               deliver: Callable[[Message], Awaitable[Outcome]],
                               ) -> ActiveSubscription:  # fmt: skip
        """A streaming subscriber's subscription: its messages go to `deliver`; retries, dead
        letters and /v1.0/metadata as for the others. Raises UnknownComponent."""
        pubsub = self.runtime.pubsub(spec.pubsub)
        active = ActiveSubscription(spec, "STREAMING", [], stream=deliver)
        metadata = {"consumerGroup": self.runtime.config.app_id, **spec.metadata}
        active.handle = await pubsub.subscribe(spec.topic, self._handler(active), metadata)
        self.subscriptions.append(active)
        return active

    async def unsubscribe(self, active: ActiveSubscription) -> None:
        """Stop a subscription; what it had not acknowledged stays with the backend."""
        self.subscriptions = [other for other in self.subscriptions if other is not active]
        if active.handle is not None:
            await active.handle.cancel()

    async def move_subscriptions(self, pubsub_name: str, pubsub: PubSub | None) -> None:
        """A reload replaced (or, with None, removed) a pub/sub: subscribe again on the new
        one, then cancel the old handles (what they had not acknowledged stays queued)."""
        for active in [s for s in self.subscriptions if s.spec.pubsub == pubsub_name]:
            old = active.handle
            if pubsub is None:
                self.subscriptions.remove(active)
                log.warning("subscription to %s/%s dropped: the pub/sub was removed",
                            pubsub_name, active.spec.topic)  # fmt: skip
            else:
                await self._resubscribe(active, pubsub)
            if old is not None:
                with contextlib.suppress(ComponentError):
                    await old.cancel()

    async def _resubscribe(self, active: ActiveSubscription, pubsub: PubSub) -> None:
        metadata = {"consumerGroup": self.runtime.config.app_id, **active.spec.metadata}
        try:
            active.handle = await pubsub.subscribe(
                active.spec.topic, self._handler(active), metadata
            )
        except ComponentError as error:
            self.subscriptions.remove(active)
            log.error("subscription to %s/%s dropped: the new pub/sub refused it: %s",
                      active.spec.pubsub, active.spec.topic, error)  # fmt: skip

    def _handler(self, active: ActiveSubscription) -> Any:
        async def handle(message: Message) -> Outcome:
            if active.stream is not None:
                outcome = await active.stream(message)
            else:
                outcome = await self._deliver(active, message)
            exhausted = message.attempt >= self.runtime.config.delivery_retries
            if outcome is Outcome.RETRY and exhausted and active.spec.dead_letter_topic:
                return await self._dead_letter(active.spec, message)
            return outcome

        return handle

    async def _deliver(self, active: ActiveSubscription, message: Message) -> Outcome:
        app = self.runtime.app
        if app is None:
            return Outcome.RETRY
        spec = active.spec
        raw = spec.metadata.get("rawPayload", "").lower() == "true"
        event = cloudevents.parse(message.data)
        if event is None and not raw:
            event = cloudevents.wrap_raw(
                message.data, spec.topic, spec.pubsub, self.runtime.config.app_id
            )
        path = _route(active, event) if event is not None else spec.route
        if self.callback is not None:  # gRPC: the path is the app's to interpret, even empty
            return await self.callback.deliver(spec, message, event, path)
        if not path:
            return Outcome.DROP  # no rule matched and no default route: Dapr drops it
        if raw and event is None:
            body, content_type = message.data, "application/octet-stream"
        else:
            body, content_type = strict_json.dumps(event), cloudevents.CLOUDEVENT_CONTENT_TYPE
        headers = Headers([(b"content-type", content_type.encode())])
        try:
            answer = await app.request("POST", path if path.startswith("/") else "/" + path,
                                       body, headers)  # fmt: skip
        except AppUnavailable as error:
            log.warning("delivering %s/%s to the app failed: %s", spec.pubsub, spec.topic, error)
            return Outcome.RETRY
        return _outcome(answer.status, answer.body, spec)

    async def _dead_letter(self, spec: SubscriptionSpec, message: Message) -> Outcome:
        assert spec.dead_letter_topic is not None
        try:
            pubsub = self.runtime.pubsub(spec.pubsub)
            await pubsub.publish(spec.dead_letter_topic, message.data, dict(message.metadata))
        except (ComponentError, LookupError) as error:
            log.error("dead-lettering to %s failed: %s", spec.dead_letter_topic, error)
            return Outcome.RETRY
        log.warning("%s/%s: message %s sent to dead-letter topic %s after %d attempts",
                    spec.pubsub, spec.topic, message.id or "-", spec.dead_letter_topic,
                    message.attempt)  # fmt: skip
        return Outcome.SUCCESS

    # -- input bindings ---------------------------------------------------------------------------

    async def read_binding(self, name: str, binding: InputBinding) -> None:
        """A reload swapped an input binding: deliver what the new one reads to the app."""
        if self.runtime.app is None:
            return
        try:
            self._bindings[name] = await binding.read(self._binding_handler(name))
        except ComponentError as error:
            log.error("input binding %r cannot be read: %s", name, error)

    async def stop_binding(self, name: str) -> None:
        handle = self._bindings.pop(name, None)
        if handle is not None:
            with contextlib.suppress(ComponentError):
                await handle.cancel()

    def _binding_handler(self, name: str) -> Any:
        async def handle(event: BindingEvent) -> None:
            if self.callback is not None:
                await self.callback.binding(name, event)
                return
            app = self.runtime.app
            assert app is not None
            headers = Headers([(b"content-type", b"application/json")])
            for key, value in event.metadata.items():
                headers.add(key.lower().encode(), str(value).encode())
            answer = await app.request("POST", f"/{name}", event.data, headers)
            if not 200 <= answer.status < 300:
                raise ComponentError(f"the app answered {answer.status} to binding {name}")

        return handle

    # -- configuration ----------------------------------------------------------------------------

    async def subscribe_configuration(self, store: str, keys: list[str], metadata: dict[str, str]
                                      ) -> str:  # fmt: skip
        component = self.runtime.configuration(store)
        subscription_id = str(uuid.uuid4())

        async def changed(items: dict[str, ConfigurationItem]) -> None:
            app = self.runtime.app
            if app is None:
                return
            body = strict_json.dumps({"id": subscription_id, "items": {
                key: {"value": item.value, "version": item.version, "metadata": dict(item.metadata)}
                for key, item in items.items()}})  # fmt: skip
            headers = Headers([(b"content-type", b"application/json")])
            for key in items:
                try:
                    await app.request("POST", f"/configuration/{store}/{key}", body, headers)
                except AppUnavailable as error:
                    log.warning(
                        "configuration update for %s/%s not delivered: %s", store, key, error
                    )

        self.configuration[subscription_id] = await component.subscribe(keys, changed, metadata)
        return subscription_id

    async def unsubscribe_configuration(self, subscription_id: str) -> bool:
        handle = self.configuration.pop(subscription_id, None)
        if handle is None:
            return False
        await handle.cancel()
        return True


def _route(active: ActiveSubscription, event: dict[str, Any]) -> str:
    for rule, path in active.rules:
        try:
            if rule(event):
                return path
        except Exception:  # a rule over odd data is a non-match, not a crash
            continue
    return active.spec.route


def _outcome(status: int, body: bytes, spec: SubscriptionSpec) -> Outcome:
    if status == 404:
        log.error("the app has no route for %s/%s (404): message dropped", spec.pubsub, spec.topic)
        return Outcome.DROP
    if not 200 <= status < 300:
        return Outcome.RETRY
    if not body.strip():
        return Outcome.SUCCESS
    try:
        answer = strict_json.loads(body)
    except strict_json.JsonError:
        return Outcome.SUCCESS  # Dapr treats a non-JSON 2xx body as success
    status_text = (
        str(answer.get("status", "SUCCESS")).upper() if isinstance(answer, dict) else "SUCCESS"
    )
    try:
        return Outcome(status_text)
    except ValueError:
        log.warning("the app answered status %r: treated as RETRY", status_text)
        return Outcome.RETRY


def _from_app(entry: Any) -> SubscriptionSpec | None:
    if not isinstance(entry, dict) or not entry.get("pubsubname") or not entry.get("topic"):
        log.warning("ignored a subscription from /dapr/subscribe: %r", entry)
        return None
    routes = entry.get("routes") or {}
    rules = tuple(
        (str(r.get("match", "")), str(r.get("path", ""))) for r in routes.get("rules", [])
    )
    metadata = entry.get("metadata") or {}
    return SubscriptionSpec(
        pubsub=str(entry["pubsubname"]),
        topic=str(entry["topic"]),
        route=str(entry.get("route") or routes.get("default") or ""),
        rules=rules,
        dead_letter_topic=entry.get("deadLetterTopic"),
        metadata={str(k): str(v) for k, v in metadata.items()},
        source="app /dapr/subscribe",
    )
