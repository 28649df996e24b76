"""Dapr's API allow and deny lists (a Configuration's `spec.api`): which of the sidecar's APIs
the app may call, by name (`state`, `invoke`, `publish`, ...), version and protocol.

A rule without a protocol holds for both. Per protocol: with no allowed rule every API is
allowed, else only the listed ones; a denied rule wins over an allowed one. Health probes
are always allowed, as in Dapr. HTTP APIs are named by their path (`/v1.0/state/...` is
`state` `v1.0`), gRPC methods by the building block they belong to (`SaveState` is `state`
`v1`, `TryLockAlpha1` is `lock` `v1alpha1`).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.reader import Node

PROTOCOLS = ("http", "grpc")
ALWAYS = frozenset({"healthz"})
_GRPC_NAMES = {
    "state": ("GetState", "GetBulkState", "SaveState", "QueryStateAlpha1", "DeleteState",
              "DeleteBulkState", "ExecuteStateTransaction"),
    "invoke": ("InvokeService",),
    "publish": ("PublishEvent", "BulkPublishEvent", "BulkPublishEventAlpha1",
                "SubscribeTopicEventsAlpha1"),
    "bindings": ("InvokeBinding",),
    "secrets": ("GetSecret", "GetBulkSecret"),
    "lock": ("TryLockAlpha1", "UnlockAlpha1", "TryLock", "RenewLock", "Unlock"),
    "metadata": ("GetMetadata", "SetMetadata"),
    "shutdown": ("Shutdown",),
    "configuration": ("GetConfiguration", "GetConfigurationAlpha1", "SubscribeConfiguration",
                      "SubscribeConfigurationAlpha1", "UnsubscribeConfiguration",
                      "UnsubscribeConfigurationAlpha1"),
    "sequencer": ("GetNextId",),
}  # fmt: skip
GRPC_NAMES = {method: name for name, methods in _GRPC_NAMES.items() for method in methods}


def http_api(parts: list[str]) -> tuple[str, str]:
    """(name, version) of an API path split in segments: `v1.0/state/...` -> state, v1.0."""
    if len(parts) < 2:
        return "", parts[0] if parts else ""
    return parts[1], parts[0]


def grpc_api(path: bytes) -> tuple[str, str]:
    """(name, version) of a gRPC method path, `/dapr.proto.runtime.v1.Dapr/SaveState`."""
    method = path.rpartition(b"/")[2].decode("latin-1")
    version = "v1alpha1" if method.endswith("Alpha1") else "v1"
    return GRPC_NAMES.get(method, method), version


@dataclass(frozen=True, slots=True)
class ApiRule:
    name: str
    version: str
    protocol: str | None = None

    def matches(self, protocol: str, name: str, version: str) -> bool:
        return (self.protocol in (None, protocol) and self.name == name
                and self.version == version)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ApiAccess:
    allowed: tuple[ApiRule, ...] = ()
    denied: tuple[ApiRule, ...] = ()

    def allows(self, protocol: str, name: str, version: str) -> bool:
        if name in ALWAYS:
            return True
        if any(rule.matches(protocol, name, version) for rule in self.denied):
            return False
        listed = [rule for rule in self.allowed if rule.protocol in (None, protocol)]
        return not listed or any(rule.matches(protocol, name, version) for rule in listed)


def parse_api_access(node: Node) -> ApiAccess | None:
    """`{allowed: [{name, version, protocol}], denied: [...]}`."""
    if node.value is None:
        return None
    node.only("allowed", "denied")
    return ApiAccess(_rules(node, "allowed"), _rules(node, "denied"))


def _rules(node: Node, key: str) -> tuple[ApiRule, ...]:
    rules = []
    for item in node.items(key):
        item.only("name", "version", "protocol")
        protocol = item.choice("protocol", PROTOCOLS, "") if item.has("protocol") else None
        rules.append(ApiRule(item.text("name"), item.text("version"), protocol or None))
    return tuple(rules)
