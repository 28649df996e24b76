"""Dapr's access control for service invocation: which caller app may call which method.

Checked by the callee's sidecar, on calls that came from another sidecar, with the caller's
app id that sidecar set. A policy per caller app id lists operations (a method path, where
`*` stands for one path segment and `**` for the rest) with HTTP verbs and an action; the
longest operation that matches decides, then the policy's default, then the global default.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.reader import Node

ACTIONS = ("allow", "deny")


@dataclass(frozen=True, slots=True)
class Operation:
    segments: tuple[str, ...]
    verbs: frozenset[str]
    allow: bool

    def specificity(self) -> tuple[int, int]:
        """Longer first, then more literal segments (`/orders/secret` over `/orders/*`)."""
        return len(self.segments), sum(part not in ("*", "**") for part in self.segments)

    def matches(self, segments: list[str]) -> bool:
        for index, pattern in enumerate(self.segments):
            if pattern == "**":
                return True
            if index >= len(segments) or (pattern != "*" and pattern != segments[index]):
                return False
        return len(segments) == len(self.segments)


@dataclass(frozen=True, slots=True)
class Policy:
    allow: bool
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessControl:
    allow: bool = True
    policies: dict[str, Policy] | None = None

    def allows(self, caller: str, method: str, verb: str) -> bool:
        policy = (self.policies or {}).get(caller)
        if policy is None:
            return self.allow
        segments = _segments(method)
        found = [op for op in policy.operations if op.matches(segments)]
        if not found:
            return policy.allow
        operation = max(found, key=Operation.specificity)
        if "*" in operation.verbs or verb.upper() in operation.verbs:
            return operation.allow
        return policy.allow


def _segments(path: str) -> list[str]:
    return [part for part in path.partition("?")[0].split("/") if part]


def parse_access_control(node: Node) -> AccessControl | None:
    """`{default_action, policies: [{app_id, default_action, operations: [{name, verbs,
    action}]}]}` (what a Dapr Configuration's `accessControl` becomes)."""
    if node.value is None:
        return None
    node.only("default_action", "policies")
    policies: dict[str, Policy] = {}
    for item in node.items("policies"):
        item.only("app_id", "default_action", "operations")
        operations = []
        for operation in item.items("operations"):
            operation.only("name", "verbs", "action")
            verbs = operation.child("verbs").value
            if not isinstance(verbs, list) or not verbs:
                verbs = ["*"]
            operations.append(Operation(
                tuple(_segments(operation.text("name"))) or ("**",),
                frozenset(str(verb).upper() for verb in verbs),
                operation.choice("action", ACTIONS, "allow") == "allow",
            ))  # fmt: skip
        allow = item.choice("default_action", ACTIONS, "allow") == "allow"
        policies[item.text("app_id")] = Policy(allow, tuple(operations))
    return AccessControl(node.choice("default_action", ACTIONS, "allow") == "allow", policies)
