"""Dapr's API allow and deny lists (runtime/api_access.py) and its access control policies
for service invocation (runtime/access_control.py)."""

from __future__ import annotations

from runtime.access_control import AccessControl, Operation, Policy
from runtime.api_access import ApiAccess, ApiRule, grpc_api, http_api

STATE_HTTP = ApiRule("state", "v1.0", "http")


def test_no_list_allows_everything() -> None:
    assert ApiAccess().allows("grpc", "state", "v1")


def test_an_allow_list_holds_for_its_protocol_only() -> None:
    access = ApiAccess(allowed=(STATE_HTTP,))
    assert access.allows("http", "state", "v1.0")
    assert not access.allows("http", "publish", "v1.0")
    assert not access.allows("http", "state", "v1.0-alpha1")
    assert access.allows("grpc", "publish", "v1")  # no gRPC rule: every gRPC API


def test_deny_wins_and_a_rule_without_protocol_holds_for_both() -> None:
    access = ApiAccess(allowed=(STATE_HTTP,), denied=(ApiRule("state", "v1.0"),))
    assert not access.allows("http", "state", "v1.0")
    assert access.allows("http", "healthz", "v1.0")  # probes always


def test_api_names() -> None:
    assert http_api(["v1.0-alpha1", "lock", "store"]) == ("lock", "v1.0-alpha1")
    assert http_api(["v1.0"]) == ("", "v1.0")
    assert grpc_api(b"/dapr.proto.runtime.v1.Dapr/SaveState") == ("state", "v1")
    assert grpc_api(b"/dapr.proto.runtime.v1.Dapr/TryLockAlpha1") == ("lock", "v1alpha1")
    assert grpc_api(b"/dapr.proto.runtime.v1.Dapr/Novel") == ("Novel", "v1")


def operation(name: str, verbs: tuple[str, ...], allow: bool) -> Operation:
    return Operation(tuple(part for part in name.split("/") if part), frozenset(verbs), allow)


CONTROL = AccessControl(allow=False, policies={
    "checkout": Policy(allow=False, operations=(
        operation("/orders/*", ("POST",), True),
        operation("/orders/secret", ("*",), False),
        operation("/admin/**", ("*",), True),
    )),
    "audit": Policy(allow=True),
})  # fmt: skip


def test_access_control_the_longest_operation_decides() -> None:
    assert CONTROL.allows("checkout", "/orders/1", "post")
    assert not CONTROL.allows("checkout", "/orders/1", "GET")  # verb not listed: the policy's
    assert not CONTROL.allows("checkout", "/orders/secret", "POST")
    assert CONTROL.allows("checkout", "/admin/a/b?x=1", "DELETE")
    assert not CONTROL.allows("checkout", "/orders/1/items", "POST")
    assert CONTROL.allows("audit", "/anything", "GET")
    assert not CONTROL.allows("stranger", "/orders/1", "POST")
