"""The `runtime:` section of mecha's config, and Dapr Component / Subscription files.

Components come from `runtime.components` (mecha YAML) and from Dapr resource files in
`runtime.components_path` (`kind: Component` and `kind: Subscription`, as Dapr reads them),
so existing Dapr component files work unchanged. What mecha does not use in those files
(another kind, a `spec` key it does not know) is a warning naming the file and the key,
never a silent skip.

`scopes` limit a component or a subscription to the listed app ids, as in Dapr. A
subscription this app makes must name a pub/sub loaded for it and routing rules that
compile: checked here, so `mecha validate` and `mecha run` refuse the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxy.config.loader import expand_env
from proxy.config.reader import ConfigError, Node, Problem
from runtime.access_control import AccessControl, parse_access_control
from runtime.api_access import ApiAccess, parse_api_access
from runtime.components import registry
from runtime.routing_rules import RuleError, compile_rule

RESERVED_APP_ID = "mecha"
RESOURCE_KEYS = ("apiVersion", "kind", "metadata", "spec", "scopes", "auth")
COMPONENT_SPEC_KEYS = ("type", "version", "metadata", "initTimeout", "ignoreErrors")
SUBSCRIPTION_SPEC_KEYS = ("pubsubname", "topic", "route", "routes", "deadLetterTopic", "metadata")
UNSUPPORTED_SPEC_KEYS = {"Subscription": ("bulkSubscribe",)}
"""Dapr keys mecha reads past: a warning says they have no effect."""
METADATA_ITEM_KEYS = ("name", "value", "secretKeyRef")
APP_PROTOCOLS = ("http", "grpc", "h2c")
"""h2c: HTTP/2 without TLS to an app that speaks HTTP, as Dapr's `--app-protocol h2c`."""


def in_scope(scopes: tuple[str, ...], app_id: str) -> bool:
    """Dapr's `scopes`: no list means every app."""
    return not scopes or app_id in scopes


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

    def serves(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


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
    scopes: tuple[str, ...] = ()

    def serves(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


@dataclass(frozen=True, slots=True)
class SecretScope:
    """Dapr's secret scope of one store: `allowed` (when not empty) lists the only secrets
    the app may read; `denied` are refused; the rest follow `default_access`."""

    default_access: str = "allow"
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        if self.allowed:
            return key in self.allowed and key not in self.denied
        return key not in self.denied and self.default_access == "allow"


@dataclass(frozen=True, slots=True)
class AppHealth:
    """Dapr's app health check: GET `path` every `interval`, `threshold` failures in a row
    (or answers slower than `timeout`) make the app unhealthy; None path: a TCP connect."""

    path: str | None = "/healthz"
    interval: float = 5.0
    timeout: float = 0.5
    threshold: int = 3


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
    app_max_concurrency: int | None = None
    """Requests (invocations and deliveries) the app is sent at once; the rest wait."""
    wait_for_app: bool = False
    """Deliver subscriptions and input bindings only once the app answers (`app_health`, or
    its port accepts), as `dapr run` does; off: at once, retried until the app is up."""
    app_health: AppHealth | None = None
    api_access: ApiAccess | None = None
    """Which of the sidecar's APIs the app may call (Dapr's API allow and deny lists)."""
    access_control: AccessControl | None = None
    """Which callers' sidecars may invoke which of this app's methods (Dapr's policies)."""
    secret_scopes: dict[str, SecretScope] = field(default_factory=dict)
    """Store name -> which of its secrets the app may read (Dapr's `secrets.scopes`)."""
    invoke_registry: str | None = None
    """The local registry file (runtime/local_registry.py): app ids of every `mecha run` on
    this machine, resolved to their sidecars."""

    def scoped_components(self) -> list[ComponentSpec]:
        """The components this app loads (secret stores first: others may need them)."""
        specs = [spec for spec in self.components if spec.serves(self.app_id)]
        return sorted(specs, key=lambda spec: spec.block != "secretstores")

    def scoped_subscriptions(self) -> list[SubscriptionSpec]:
        return [spec for spec in self.subscriptions if spec.serves(self.app_id)]

    def secret_allowed(self, store: str, key: str) -> bool:
        scope = self.secret_scopes.get(store)
        return scope is None or scope.allows(key)


def parse_runtime(
    node: Node, base_dir: Path | None = None, warnings: list[Problem] | None = None
) -> RuntimeConfig:
    """`warnings` collects what is read past (unknown kinds and keys in Dapr files)."""
    node.only("app_id", "app_port", "app_host", "app_protocol", "api_token", "app_token",
              "components", "components_path", "subscriptions", "invoke", "max_request_body",
              "delivery", "app_max_concurrency", "wait_for_app", "app_health",
              "secret_scopes", "access_control", "api_access")  # fmt: skip
    invoke = node.section("invoke")
    invoke.only("clusters", "dns", "timeout", "retries", "registry")
    clusters = invoke.child("clusters").value or {}
    if not isinstance(clusters, dict):
        invoke.problem("expected a mapping of app id to cluster", "clusters")
        clusters = {}
    delivery = node.section("delivery")
    delivery.only("retries", "backoff")
    components = [_component(item) for item in node.items("components")]
    subscriptions = [_subscription(item) for item in node.items("subscriptions")]
    for path in _components_paths(node, base_dir):
        found, declared = _resource_files(node, path, [] if warnings is None else warnings)
        components += found
        subscriptions += declared
    _unique_names(node, components)
    token = node.text("api_token", "")
    app_token = node.text("app_token", "")
    port = node.integer("app_port", 0, minimum=0, maximum=65535)
    app_id = node.text("app_id", RESERVED_APP_ID)
    loaded = [c for c in components if c is not None]
    _check_subscriptions(node, app_id, loaded, [s for s in subscriptions if s is not None])
    return RuntimeConfig(
        app_id=app_id,
        app_port=port or None,
        app_host=node.text("app_host", "127.0.0.1"),
        app_protocol=node.choice("app_protocol", APP_PROTOCOLS, "http"),
        api_token=token or None,
        app_token=app_token or None,
        components=tuple(loaded),
        subscriptions=tuple(s for s in subscriptions if s is not None),
        invoke_clusters={str(k): str(v) for k, v in clusters.items()},
        invoke_dns=_dns_template(invoke),
        invoke_timeout=invoke.duration("timeout", 60.0) or None,
        invoke_retries=invoke.integer("retries", 2, minimum=0),
        max_request_body=node.size("max_request_body", 4 << 20, minimum=1024),
        delivery_retries=delivery.integer("retries", 10, minimum=0),
        delivery_backoff=delivery.duration("backoff", 0.2, positive=True),
        app_max_concurrency=node.integer("app_max_concurrency", 0, minimum=0) or None,
        wait_for_app=node.flag("wait_for_app", False),
        app_health=_app_health(node),
        secret_scopes=_secret_scopes(node.section("secret_scopes")),
        access_control=parse_access_control(node.child("access_control")),
        api_access=parse_api_access(node.child("api_access")),
        invoke_registry=invoke.text("registry", "") or None,
    )


def _components_paths(node: Node, base_dir: Path | None) -> list[Path]:
    """`components_path`: one directory or a list of them (Dapr's repeated --resources-path)."""
    value = node.child("components_path").value
    if value is None:
        return []
    names = value if isinstance(value, list) else [value]
    paths = [Path(name) for name in names if isinstance(name, str) and name]
    if len(paths) != len(names):
        node.problem("expected a directory or a list of directories", "components_path")
        return []
    if base_dir is None:
        return paths
    return [path if path.is_absolute() else base_dir / path for path in paths]


def _secret_scopes(node: Node) -> dict[str, SecretScope]:
    """`{store: {default_access: allow|deny, allowed: [names], denied: [names]}}`."""
    scopes: dict[str, SecretScope] = {}
    for store in node.value if isinstance(node.value, dict) else {}:
        scope = node.section(str(store))
        scope.only("default_access", "allowed", "denied")
        scopes[str(store)] = SecretScope(
            default_access=scope.choice("default_access", ("allow", "deny"), "allow"),
            allowed=frozenset(_strings(scope, "allowed")),
            denied=frozenset(_strings(scope, "denied")),
        )
    return scopes


def _app_health(node: Node) -> AppHealth | None:
    if not node.has("app_health"):
        return None
    health = node.section("app_health")
    health.only("path", "interval", "timeout", "threshold")
    path = health.text("path", "/healthz") or None
    if path is not None and not path.startswith("/"):
        health.problem("expected a path starting with /, or '' for a TCP connect", "path")
    return AppHealth(
        path=path,
        interval=health.duration("interval", 5.0, positive=True),
        timeout=health.duration("timeout", 0.5, positive=True),
        threshold=health.integer("threshold", 3, minimum=1),
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


def _check_subscriptions(node: Node, app_id: str, components: list[ComponentSpec],
                         subscriptions: list[SubscriptionSpec]) -> None:  # fmt: skip
    """Each subscription of this app names a pub/sub loaded for it, on a topic it may use."""
    by_name = {spec.name: spec for spec in components}
    for subscription in subscriptions:
        if not subscription.serves(app_id) or not subscription.pubsub:
            continue
        pubsub = by_name.get(subscription.pubsub)
        problem = _pubsub_problem(subscription, pubsub, app_id, components)
        if problem is not None:
            node.problems.append(Problem(f"{subscription.source}.pubsubname", problem))


def _pubsub_problem(subscription: SubscriptionSpec, pubsub: ComponentSpec | None, app_id: str,
                    components: list[ComponentSpec]) -> str | None:  # fmt: skip
    name = subscription.pubsub
    if pubsub is None:
        known = [c.name for c in components if c.block == "pubsub" and c.serves(app_id)]
        return f"pubsub {name!r} is not declared (pub/sub components: {', '.join(known) or 'none'})"
    if pubsub.block != "pubsub":
        return f"{name!r} is a {pubsub.block} component, not a pub/sub"
    if not pubsub.serves(app_id):
        return (f"pubsub {name!r} is not loaded for app {app_id!r} "
                f"(its scopes: {', '.join(pubsub.scopes)})")  # fmt: skip
    if not topic_allowed(pubsub.metadata, app_id, subscription.topic, "subscriptionScopes"):
        return f"topic {subscription.topic!r} of pubsub {name!r} is not allowed for app {app_id!r}"
    return None


def topic_allowed(metadata: Mapping[str, str | SecretRef], app_id: str, topic: str,
                  scopes_key: str) -> bool:  # fmt: skip
    """A pub/sub's `allowedTopics` (every app) and `publishingScopes` / `subscriptionScopes`
    (`app1=t1,t2;app2=t3`: an app listed may use only its topics), as Dapr reads them."""
    allowed = metadata.get("allowedTopics")
    if isinstance(allowed, str) and allowed.strip() and topic not in _names(allowed):
        return False
    scopes = metadata.get(scopes_key)
    if isinstance(scopes, str) and scopes.strip():
        for scope in scopes.split(";"):
            app, _, topics = scope.partition("=")
            if app.strip() == app_id:
                return topic in _names(topics)
    return True


def _names(listed: str) -> set[str]:
    return {name.strip() for name in listed.split(",") if name.strip()}


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
    node.only("pubsubname", "topic", "route", "routes", "deadLetterTopic", "metadata", "scopes")
    routes = node.section("routes")
    routes.only("rules", "default")
    rules = []
    for rule in routes.items("rules"):
        rule.only("match", "path")
        rules.append((_rule(rule), rule.text("path")))
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
        scopes=tuple(_strings(node, "scopes")),
    )


def _rule(node: Node) -> str:
    """A routing rule's match, refused here when the CEL subset cannot compile it."""
    match = node.text("match")
    if match:
        try:
            compile_rule(match)
        except RuleError as error:
            node.problem(str(error), "match")
    return match


def _resource_files(
    node: Node, path: Path, warnings: list[Problem]
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
            where = _resource(node, f"{file}[{index}]", document, warnings)
            if where is None:
                continue
            if _middleware(document):
                warnings.append(Problem(f"{file}[{index}]", "a middleware is not a component "
                                        "mecha loads: a Configuration's httpPipeline applies "
                                        "it"))  # fmt: skip
            elif document.get("kind") == "Component":
                components.append(_dapr_component(where, warnings))
            else:
                subscriptions.append(_dapr_subscription(where, warnings))
    return components, subscriptions


def _middleware(document: dict[str, Any]) -> bool:
    spec = document.get("spec")
    kind = spec.get("type") if isinstance(spec, dict) else None
    return document.get("kind") == "Component" and str(kind).startswith("middleware.")


def _resource(node: Node, path: str, document: Any, warnings: list[Problem]) -> Node | None:
    """The expanded document, if it is a kind mecha reads; a warning says what is skipped."""
    if document is None:
        return None  # an empty document (a trailing `---`)
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind not in ("Component", "Subscription"):
        what = f"kind {kind!r} is" if kind else "a document without a kind is"
        warnings.append(Problem(f"{path}.kind", f"{what} not supported by mecha: ignored"))
        return None
    try:
        document = expand_env(document)
    except ConfigError as error:
        node.problems.extend(Problem(f"{path}.{p.path}", p.message) for p in error.problems)
        return None
    where = Node(document, path, node.problems)
    _warn_unknown(where, RESOURCE_KEYS, warnings)
    spec_keys = COMPONENT_SPEC_KEYS if kind == "Component" else SUBSCRIPTION_SPEC_KEYS
    _warn_unknown(where.child("spec"), spec_keys, warnings, UNSUPPORTED_SPEC_KEYS.get(kind, ()))
    return where


def _warn_unknown(node: Node, known: tuple[str, ...], warnings: list[Problem],
                  unsupported: tuple[str, ...] = ()) -> None:  # fmt: skip
    if not isinstance(node.value, dict):
        return
    for key in node.value:
        if key in unsupported:
            message = "not supported by mecha: ignored"
        elif key not in known:
            message = f"unknown key (expected one of: {', '.join(known)}): ignored"
        else:
            continue
        warnings.append(Problem(f"{node.path}.{key}", message))


def _dapr_component(node: Node, warnings: list[Problem]) -> ComponentSpec | None:
    meta, spec = node.section("metadata"), node.section("spec")
    kind = spec.text("type")
    if kind and not registry.known(kind):
        spec.problem(f"unknown component type {kind!r}", "type")
    store = node.section("auth").text("secretStore", "") or None
    items: dict[str, Any] = {}
    for item in spec.items("metadata"):
        item_value = item.value if isinstance(item.value, dict) else {}
        _warn_unknown(item, METADATA_ITEM_KEYS, warnings)
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


def _dapr_subscription(node: Node, warnings: list[Problem]) -> SubscriptionSpec | None:
    spec = node.section("spec")
    converted = {key: spec.child(key).value for key in SUBSCRIPTION_SPEC_KEYS if spec.has(key)}
    if node.has("scopes"):
        converted["scopes"] = node.child("scopes").value
    return _subscription(Node(converted, spec.path, node.problems))
