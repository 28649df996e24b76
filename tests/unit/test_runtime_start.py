"""The runtime's start-up: what it loads for its app id, and a failure as one line naming the
component, its declaration and the reason (or a warning, with `ignore_errors`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from proxy.upstream.cluster import ClusterManager
from runtime.components import registry
from runtime.components.api import Metadata
from runtime.components.errors import ComponentError
from runtime.config import ComponentSpec, RuntimeConfig, SubscriptionSpec
from runtime.delivery import SubscriptionRefused
from runtime.runtime import Runtime, RuntimeStartError, UnknownComponent

PUBSUB = ComponentSpec("pubsub", "pubsub.in-memory", source="runtime.components[0]")


def runtime(*components: ComponentSpec, subscriptions: tuple[SubscriptionSpec, ...] = (),
            app_id: str = "orders") -> Runtime:  # fmt: skip
    config = RuntimeConfig(app_id=app_id, components=components, subscriptions=subscriptions)
    return Runtime(config, ClusterManager(()))


def secrets_file(path: Path, ignore_errors: bool = False) -> ComponentSpec:
    return ComponentSpec("localsecretstore", "secretstores.local.file",
                         metadata={"secretsFile": str(path)}, ignore_errors=ignore_errors,
                         source="/etc/mecha/components/secrets.yaml[0]")  # fmt: skip


async def test_a_component_that_cannot_start_is_one_line_naming_it_and_its_key(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere.json"
    started = runtime(secrets_file(missing), PUBSUB)
    with pytest.raises(RuntimeStartError) as caught:
        await started.start()
    await started.stop()
    assert str(caught.value) == (
        "component 'localsecretstore' (secretstores.local.file, "
        "/etc/mecha/components/secrets.yaml[0]) failed to start: metadata 'secretsFile': "
        f"cannot read {missing}: No such file or directory"
    )
    assert "\n" not in str(caught.value)


async def test_ignore_errors_is_a_warning_and_a_runtime_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = runtime(secrets_file(tmp_path / "nowhere.json", ignore_errors=True), PUBSUB)
    with caplog.at_level(logging.WARNING, "mecha.runtime"):
        await started.start()
    try:
        assert "failed to start: metadata 'secretsFile'" in caplog.text
        assert "ignored (ignoreErrors)" in caplog.text
        assert not started.components["localsecretstore"].ready
        with pytest.raises(UnknownComponent):
            started.secrets("localsecretstore")
        assert started.pubsub("pubsub") is not None
    finally:
        await started.stop()


class Exploding:
    """A backend whose init raises what no component should: still one line, and closed."""

    closed = False

    async def init(self, metadata: Metadata) -> None:
        raise OSError(28, "No space left on device")

    async def close(self) -> None:
        Exploding.closed = True


async def test_an_unexpected_init_exception_is_one_line_and_the_half_made_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "create", lambda kind: Exploding())
    started = runtime(ComponentSpec("st", "state.in-memory", source="runtime.components[3]"))
    with pytest.raises(RuntimeStartError) as caught:
        await started.start()
    assert str(caught.value) == (
        "component 'st' (state.in-memory, runtime.components[3]) failed to start: "
        "OSError: [Errno 28] No space left on device"
    )
    assert Exploding.closed


async def test_components_and_subscriptions_of_other_apps_are_not_loaded() -> None:
    mine = SubscriptionSpec("pubsub", "mine", "/mine")
    theirs = SubscriptionSpec("pubsub", "theirs", "/theirs", scopes=("checkout",))
    started = runtime(PUBSUB, ComponentSpec("state", "state.in-memory", scopes=("checkout",)),
                      subscriptions=(mine, theirs))  # fmt: skip
    await started.start()
    try:
        assert list(started.components) == ["pubsub"]
        assert [active.spec.topic for active in started.delivery.subscriptions] == ["mine"]
    finally:
        await started.stop()


async def refusing_subscribe(*args: Any) -> Any:
    raise ComponentError("the broker refused the subscription")


@pytest.mark.parametrize("ignore_errors", [False, True])
async def test_a_declared_subscription_that_cannot_be_made_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, ignore_errors: bool
) -> None:
    pubsub = ComponentSpec("pubsub", "pubsub.in-memory", ignore_errors=ignore_errors)
    spec = SubscriptionSpec("pubsub", "orders", "/orders", source="subs.yaml[0].spec")
    started = runtime(pubsub, subscriptions=(spec,))
    original = started.load_component

    async def load(spec: ComponentSpec) -> Any:
        loaded = await original(spec)
        monkeypatch.setattr(loaded.instance, "subscribe", refusing_subscribe)
        return loaded

    monkeypatch.setattr(started, "load_component", load)
    message = ("subscription to pubsub/orders (subs.yaml[0].spec) refused: "
               "the broker refused the subscription")  # fmt: skip
    try:
        if ignore_errors:
            with caplog.at_level(logging.WARNING, "mecha.delivery"):
                await started.start()
            assert f"{message}; ignored (ignoreErrors of 'pubsub')" in caplog.text
            assert started.delivery.subscriptions == []
        else:
            with pytest.raises(RuntimeStartError, match=r"^subscription to pubsub/orders \(subs"):
                await started.start()
    finally:
        await started.stop()


async def test_a_topic_outside_subscription_scopes_is_refused() -> None:
    metadata: dict[str, Any] = {"subscriptionScopes": "orders=allowed"}
    started = runtime(ComponentSpec("pubsub", "pubsub.in-memory", metadata=metadata))
    await started.start()
    try:
        with pytest.raises(SubscriptionRefused, match="topic 'other' is not allowed"):
            await started.delivery._subscribe(SubscriptionSpec("pubsub", "other", "/o"), "X")
        await started.delivery._subscribe(SubscriptionSpec("pubsub", "allowed", "/a"), "X")
        assert [a.spec.topic for a in started.delivery.subscriptions] == ["allowed"]
    finally:
        await started.stop()
