"""The `runtime:` section and Dapr resource files: scopes, what is read past (warnings), and
the checks `mecha validate` and `mecha run` share (subscriptions, routing rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.model import Config
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError
from runtime.config import topic_allowed

PUBSUB = {"name": "pubsub", "type": "pubsub.in-memory"}


def config(runtime: dict[str, Any], base_dir: Path | None = None) -> Config:
    return parse_config({"runtime": {"app_id": "orders", **runtime}}, base_dir)


def problems(runtime: dict[str, Any], base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config(runtime, base_dir)
    return [str(problem) for problem in caught.value.problems]


def resources(tmp_path: Path, *documents: dict[str, Any], name: str = "dapr.yaml") -> Path:
    folder = tmp_path / "components"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return folder


def component(name: str, kind: str, scopes: list[str] | None = None,
              **spec: Any) -> dict[str, Any]:  # fmt: skip
    document: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1", "kind": "Component", "metadata": {"name": name},
        "spec": {"type": kind, "version": "v1", **spec},
    }  # fmt: skip
    if scopes is not None:
        document["scopes"] = scopes
    return document


def subscription(topic: str, scopes: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "dapr.io/v2alpha1", "kind": "Subscription", "metadata": {"name": topic},
        "spec": {"pubsubname": "pubsub", "topic": topic, "routes": {"default": f"/{topic}"},
                 **spec},
    }  # fmt: skip
    if scopes is not None:
        document["scopes"] = scopes
    return document


# -- scopes ------------------------------------------------------------------------------------


def test_subscription_scopes_keep_other_apps_subscriptions_out(tmp_path: Path) -> None:
    folder = resources(
        tmp_path,
        component("pubsub", "pubsub.in-memory"),
        subscription("for-checkout", scopes=["checkout"]),
        subscription("for-orders", scopes=["checkout", "orders"]),
        subscription("for-everyone"),
    )
    runtime = config({"components_path": str(folder)}).runtime
    assert runtime is not None
    assert [s.topic for s in runtime.subscriptions] == ["for-checkout", "for-orders",
                                                        "for-everyone"]  # fmt: skip
    assert [s.topic for s in runtime.scoped_subscriptions()] == ["for-orders", "for-everyone"]
    assert runtime.subscriptions[0].scopes == ("checkout",)


def test_component_scopes_and_secret_stores_first(tmp_path: Path) -> None:
    folder = resources(
        tmp_path,
        component("state", "state.in-memory", scopes=["checkout"]),
        component("ids", "sequencer.in-memory", scopes=["orders"]),
        component("vault", "secretstores.local.env"),
    )
    runtime = config({"components_path": str(folder)}).runtime
    assert runtime is not None
    assert [c.name for c in runtime.scoped_components()] == ["vault", "ids"]


def test_mecha_yaml_subscriptions_take_scopes() -> None:
    runtime = config({
        "components": [PUBSUB],
        "subscriptions": [{"pubsubname": "pubsub", "topic": "t", "route": "/t",
                           "scopes": ["checkout"]}],
    }).runtime  # fmt: skip
    assert runtime is not None and runtime.scoped_subscriptions() == []


# -- one check for validate and run ------------------------------------------------------------


def test_a_subscription_to_an_undeclared_pubsub_is_a_problem(tmp_path: Path) -> None:
    folder = resources(tmp_path, component("pubsub", "pubsub.in-memory"),
                       subscription("orders", pubsubname="nowhere"))  # fmt: skip
    assert problems({"components_path": str(folder)}) == [
        f"{folder / 'dapr.yaml'}[1].spec.pubsubname: pubsub 'nowhere' is not declared "
        "(pub/sub components: pubsub)"
    ]


@pytest.mark.parametrize(
    ("components", "message"),
    [
        ([], "pubsub 'pubsub' is not declared (pub/sub components: none)"),
        ([{"name": "pubsub", "type": "state.in-memory"}],
         "'pubsub' is a state component, not a pub/sub"),
        ([{**PUBSUB, "scopes": ["checkout"]}],
         "pubsub 'pubsub' is not loaded for app 'orders' (its scopes: checkout)"),
        ([{**PUBSUB, "metadata": {"subscriptionScopes": "orders=a,b"}}],
         "topic 't' of pubsub 'pubsub' is not allowed for app 'orders'"),
        ([{**PUBSUB, "metadata": {"allowedTopics": "x"}}],
         "topic 't' of pubsub 'pubsub' is not allowed for app 'orders'"),
    ],
)  # fmt: skip
def test_subscriptions_must_name_a_pubsub_loaded_for_this_app(
    components: list[dict[str, Any]], message: str
) -> None:
    subscriptions = [{"pubsubname": "pubsub", "topic": "t", "route": "/t"}]
    found = problems({"components": components, "subscriptions": subscriptions})
    assert found == [f"runtime.subscriptions[0].pubsubname: {message}"]


def test_another_apps_subscription_is_not_checked() -> None:
    subscriptions = [{"pubsubname": "theirs", "topic": "t", "route": "/t", "scopes": ["x"]}]
    assert config({"subscriptions": subscriptions}).runtime is not None


@pytest.mark.parametrize("match", ['event.type.startsWith("a")', "event.type ==", "type == 1"])
def test_a_rule_the_cel_subset_cannot_compile_is_a_problem(match: str) -> None:
    routes = {"rules": [{"match": 'event.type == "a"', "path": "/a"},
                        {"match": match, "path": "/b"}]}  # fmt: skip
    subscriptions = [{"pubsubname": "pubsub", "topic": "t", "routes": routes}]
    found = problems({"components": [PUBSUB], "subscriptions": subscriptions})
    assert len(found) == 1
    assert found[0].startswith("runtime.subscriptions[0].routes.rules[1].match: ")
    assert repr(match) in found[0]


# -- what mecha reads past ---------------------------------------------------------------------


def test_other_kinds_and_unknown_keys_are_warnings_naming_file_and_key(tmp_path: Path) -> None:
    odd_component = component("pubsub", "pubsub.in-memory", retries=3)
    odd_component["spec"]["metadata"] = [{"name": "a", "value": "1", "envRef": "A"}]
    odd_component["status"] = {}
    folder = resources(
        tmp_path,
        odd_component,
        subscription("t", bulkSubscribe={"enabled": True}),
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", "metadata": {"name": "r"}},
        {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration", "spec": {}},
        {"apiVersion": "dapr.io/v1alpha1", "kind": "HTTPEndpoint", "spec": {}},
        {"spec": {}},
    )
    file = folder / "dapr.yaml"
    parsed = config({"components_path": str(folder)})
    assert [str(w) for w in parsed.warnings] == [
        f"{file}[0].status: unknown key (expected one of: apiVersion, kind, metadata, spec, "
        "scopes, auth): ignored",
        f"{file}[0].spec.retries: unknown key (expected one of: type, version, metadata, "
        "initTimeout, ignoreErrors): ignored",
        f"{file}[0].spec.metadata[0].envRef: unknown key (expected one of: name, value, "
        "secretKeyRef): ignored",
        f"{file}[1].spec.bulkSubscribe: not supported by mecha: ignored",
        f"{file}[2].kind: kind 'Resiliency' is not supported by mecha: ignored",
        f"{file}[3].kind: kind 'Configuration' is not supported by mecha: ignored",
        f"{file}[4].kind: kind 'HTTPEndpoint' is not supported by mecha: ignored",
        f"{file}[5].kind: a document without a kind is not supported by mecha: ignored",
    ]
    assert parsed.runtime is not None and len(parsed.runtime.subscriptions) == 1


def test_known_files_give_no_warning(tmp_path: Path) -> None:
    folder = resources(tmp_path, component("pubsub", "pubsub.in-memory", ignoreErrors=True,
                                           initTimeout="5s"), subscription("t"))  # fmt: skip
    assert config({"components_path": str(folder)}).warnings == ()


# -- topic scopes, as Dapr reads them ----------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "app", "topic", "allowed"),
    [
        ({}, "a", "t", True),
        ({"allowedTopics": "t, u"}, "a", "u", True),
        ({"allowedTopics": "t"}, "a", "u", False),
        ({"subscriptionScopes": "a=t;b=u"}, "a", "t", True),
        ({"subscriptionScopes": "a=t;b=u"}, "a", "u", False),
        ({"subscriptionScopes": "b=u"}, "a", "anything", True),  # an app not listed: all
        ({"subscriptionScopes": "a="}, "a", "t", False),  # listed with none: nothing
        ({"publishingScopes": "a=x"}, "a", "t", True),  # the other direction's key
    ],
)
def test_topic_allowed(metadata: dict[str, str], app: str, topic: str, allowed: bool) -> None:
    assert topic_allowed(metadata, app, topic, "subscriptionScopes") is allowed
