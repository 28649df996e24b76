"""The `runtime:` section of mecha's config, and Dapr Component / Subscription files.

Components come from `runtime.components` (mecha YAML) and from Dapr resource files in
`runtime.components_path` (`kind: Component` and `kind: Subscription`, as Dapr reads them),
so existing Dapr component files work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxy.config.loader import expand_env
from proxy.config.reader import ConfigError, Node, Problem
from runtime.components import registry

RESERVED_APP_ID = "mecha"


@dataclass(frozen=True, slots=True)
class SecretRef:
    store: str | None
    """The secret store (the component's `auth.secretStore`), None: the default one."""
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    type: str
    version: str = "v1"
    metadata: dict[str, str | SecretRef] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()
    ignore_errors: bool = False
    init_timeout: float = 10.0
    source: str = ""
    """Where it was declared (YAML path or file), for error messages."""

    @property
    def block(self) -> str:
        return registry.block_of(self.type)


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    pubsub: str
    topic: str
    route: str = ""
    rules: tuple[tuple[str, str], ...] = ()
    """(CEL-like match expression, path) pairs, tried in order (Dapr v2alpha1 routes)."""
    dead_letter_topic: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = "declarative"


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    app_id: str = RESERVED_APP_ID
    app_port: int | None = None
    app_host: str = "127.0.0.1"
    app_protocol: str = "http"
    api_token: str | None = None
    app_token: str | None = None
    components: tuple[ComponentSpec, ...] = ()
    subscriptions: tuple[SubscriptionSpec, ...] = ()
    invoke_clusters: dict[str, str] = field(default_factory=dict)
    """app id -> mesh cluster for service invocation."""
    invoke_dns: str | None = None
    """`host:port` template with `{app_id}`: app ids no cluster serves are resolved by DNS."""
    invoke_timeout: float | None = 60.0
    invoke_retries: int = 2
    """Retries of invocations that never reached the app (connect failures, refused streams)."""
    max_request_body: int = 4 << 20
    delivery_retries: int = 10
    delivery_backoff: float = 0.2


def parse_runtime(node: Node, base_dir: Path | None = None) -> RuntimeConfig:
    node.only("app_id", "app_port", "app_host", "app_protocol", "api_token", "app_token",
              "components", "components_path", "subscriptions", "invoke", "max_request_body",
              "delivery")  # fmt: skip
    invoke = node.section("invoke")
    invoke.only("clusters", "dns", "timeout", "retries")
    clusters = invoke.child("clusters").value or {}
    if not isinstance(clusters, dict):
        invoke.problem("expected a mapping of app id to cluster", "clusters")
        clusters = {}
    delivery = node.section("delivery")
    delivery.only("retries", "backoff")
    components = [_component(item) for item in node.items("components")]
    subscriptions = [_subscription(item) for item in node.items("subscriptions")]
    if node.has("components_path"):
        path = Path(node.text("components_path"))
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        found, declared = _resource_files(node, path)
        components += found
        subscriptions += declared
    _unique_names(node, components)
    token = node.text("api_token", "")
    app_token = node.text("app_token", "")
    port = node.integer("app_port", 0, minimum=0, maximum=65535)
    return RuntimeConfig(
        app_id=node.text("app_id", RESERVED_APP_ID),
        app_port=port or None,
        app_host=node.text("app_host", "127.0.0.1"),
        app_protocol=node.choice("app_protocol", ("http", "grpc"), "http"),
        api_token=token or None,
        app_token=app_token or None,
        components=tuple(c for c in components if c is not None),
        subscriptions=tuple(s for s in subscriptions if s is not None),
        invoke_clusters={str(k): str(v) for k, v in clusters.items()},
        invoke_dns=_dns_template(invoke),
        invoke_timeout=invoke.duration("timeout", 60.0) or None,
        invoke_retries=invoke.integer("retries", 2, minimum=0),
        max_request_body=node.size("max_request_body", 4 << 20, minimum=1024),
        delivery_retries=delivery.integer("retries", 10, minimum=0),
        delivery_backoff=delivery.duration("backoff", 0.2, positive=True),
    )


def _dns_template(node: Node) -> str | None:
    template = node.text("dns", "")
    if not template:
        return None
    host, _, port = template.replace("{app_id}", "app").rpartition(":")
    if "{app_id}" not in template or not host or not port.isdigit():
        node.problem("expected host:port with {app_id} in the host, e.g. "
                     "'{app_id}.default.svc.cluster.local:80'", "dns")  # fmt: skip
        return None
    return template


def _unique_names(node: Node, components: list[ComponentSpec | None]) -> None:
    seen: set[str] = set()
    for spec in components:
        if spec is None:
            continue
        if spec.name in seen:
            node.problem(f"component {spec.name!r} is declared twice ({spec.source})", "components")
        seen.add(spec.name)


def _component(node: Node) -> ComponentSpec | None:
    if not node.expect_mapping():
        return None
    node.only("name", "type", "version", "metadata", "scopes", "ignore_errors", "init_timeout",
              "secret_store")  # fmt: skip
    kind = node.text("type")
    if kind and not registry.known(kind):
        node.problem(
            f"unknown component type {kind!r} (known: {', '.join(sorted(registry.TYPES))})", "type"
        )
    metadata = node.child("metadata").value or {}
    store = node.text("secret_store") if node.has("secret_store") else None
    return ComponentSpec(
        name=node.text("name"),
        type=registry.canonical(kind),
        version=node.text("version", "v1"),
        metadata=_metadata_mapping(node.child("metadata"), metadata, store),
        scopes=tuple(_strings(node, "scopes")),
        ignore_errors=node.flag("ignore_errors", False),
        init_timeout=node.duration("init_timeout", 10.0, positive=True),
        source=node.path,
    )


def _metadata_mapping(node: Node, value: Any, store: str | None) -> dict[str, str | SecretRef]:
    """`{key: value}` or `{key: {secretKeyRef: {name, key}}}`."""
    result: dict[str, str | SecretRef] = {}
    if not isinstance(value, dict):
        node.problem("expected a mapping of names to values")
        return result
    for key, item in value.items():
        if isinstance(item, dict) and "secretKeyRef" in item:
            ref = item["secretKeyRef"] or {}
            result[str(key)] = SecretRef(
                store, str(ref.get("name", "")), str(ref.get("key") or ref.get("name", ""))
            )
        elif isinstance(item, str | int | float | bool):
            result[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
        else:
            node.problem("expected a value or a secretKeyRef", str(key))
    return result


def _strings(node: Node, key: str) -> list[str]:
    value = node.child(key).value or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        node.problem("expected a list of strings", key)
        return []
    return value


def _subscription(node: Node) -> SubscriptionSpec | None:
    if not node.expect_mapping():
        return None
    node.only("pubsubname", "topic", "route", "routes", "deadLetterTopic", "metadata")
    routes = node.section("routes")
    routes.only("rules", "default")
    rules = []
    for rule in routes.items("rules"):
        rule.only("match", "path")
        rules.append((rule.text("match"), rule.text("path")))
    metadata = node.child("metadata").value or {}
    return SubscriptionSpec(
        pubsub=node.text("pubsubname"),
        topic=node.text("topic"),
        route=node.text("route", "") or routes.text("default", ""),
        rules=tuple(rules),
        dead_letter_topic=node.text("deadLetterTopic") if node.has("deadLetterTopic") else None,
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else {},
        source=node.path,
    )


def _resource_files(
    node: Node, path: Path
) -> tuple[list[ComponentSpec | None], list[SubscriptionSpec | None]]:
    """Dapr resource files: every `kind: Component` and `kind: Subscription` document."""
    if not path.is_dir():
        node.problem(f"{path} is not a directory", "components_path")
        return [], []
    components: list[ComponentSpec | None] = []
    subscriptions: list[SubscriptionSpec | None] = []
    for file in sorted(path.glob("*.y*ml")):
        try:
            documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            node.problem(f"{file}: {exc}", "components_path")
            continue
        for index, document in enumerate(documents):
            if not isinstance(document, dict):
                continue
            try:
                document = expand_env(document)
            except ConfigError as error:
                node.problems.extend(
                    Problem(f"{file}[{index}].{p.path}", p.message) for p in error.problems
                )
                continue
            where = Node(document, f"{file}[{index}]", node.problems)
            if document.get("kind") == "Component":
                components.append(_dapr_component(where))
            elif document.get("kind") == "Subscription":
                subscriptions.append(_dapr_subscription(where))
    return components, subscriptions


def _dapr_component(node: Node) -> ComponentSpec | None:
    meta, spec = node.section("metadata"), node.section("spec")
    kind = spec.text("type")
    if kind and not registry.known(kind):
        spec.problem(f"unknown component type {kind!r}", "type")
    store = node.section("auth").text("secretStore", "") or None
    items: dict[str, Any] = {}
    for item in spec.items("metadata"):
        item_value = item.value if isinstance(item.value, dict) else {}
        name = str(item_value.get("name", ""))
        if "secretKeyRef" in item_value:
            items[name] = {"secretKeyRef": item_value["secretKeyRef"]}
        else:
            items[name] = item_value.get("value", "")
    init_timeout = spec.duration("initTimeout", 10.0, positive=True)
    return ComponentSpec(
        name=meta.text("name"),
        type=registry.canonical(kind),
        version=spec.text("version", "v1"),
        metadata=_metadata_mapping(spec.child("metadata"), items, store),
        scopes=tuple(_strings(node, "scopes")),
        ignore_errors=spec.flag("ignoreErrors", False),
        init_timeout=init_timeout,
        source=node.path,
    )


def _dapr_subscription(node: Node) -> SubscriptionSpec | None:
    spec = node.section("spec")
    converted = {
        key: spec.child(key).value
        for key in ("pubsubname", "topic", "route", "routes", "deadLetterTopic", "metadata")
        if spec.has(key)
    }
    return _subscription(Node(converted, spec.path, node.problems))
