"""What a reload would change, computed from two parsed configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from proxy.config.model import Config
from proxy.config.parse import parse_config
from proxy.config_diff import Changes, compare, diff_configs, strings_in
from tests.support.certs import TestCA


def tcp_listener(name: str, cluster: str, port: int = 0) -> dict[str, Any]:
    return {"name": name, "address": f"127.0.0.1:{port}",
            "filters": [{"name": "tcp_proxy", "config": {"cluster": cluster}}]}  # fmt: skip


def http_listener(name: str, routes: dict[str, str]) -> dict[str, Any]:
    """`routes`: path prefix -> cluster."""
    entries = [{"match": {"prefix": p}, "route": {"cluster": c}} for p, c in routes.items()]
    manager = {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                   "routes": entries}]}}  # fmt: skip
    return {"name": name, "address": "127.0.0.1:0",
            "filters": [{"name": "http", "config": manager}]}  # fmt: skip


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "endpoints": [f"127.0.0.1:{port}"]}


BASE: dict[str, Any] = {
    "listeners": [tcp_listener("redis", "cache"), http_listener("web", {"/": "app"})],
    "clusters": [cluster("cache", 6379), cluster("app", 8080)],
    "runtime": {"app_id": "shop", "components": [
        {"name": "statestore", "type": "state.in-memory"},
        {"name": "pubsub", "type": "pubsub.in-memory"},
    ]},
}  # fmt: skip


def parsed(document: dict[str, Any]) -> Config:
    return parse_config(copy.deepcopy(document))


def edited(**sections: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document.update(sections)
    return document


def test_compare_keeps_config_order() -> None:
    changes = compare({"a": 1, "b": 2, "c": 3}, {"d": 0, "b": 2, "a": 9, "e": 0})
    assert changes == Changes(added=("d", "e"), changed=("a",), removed=("c",))
    assert changes.describe("listeners") == "listeners: +d +e ~a -c"
    assert not compare({"a": 1}, {"a": 1})
    assert compare({"a": 1}, {"a": 1}).describe("clusters") is None


def test_the_same_file_is_an_empty_diff() -> None:
    diff = diff_configs(parsed(BASE), parsed(BASE))
    assert diff.empty
    assert diff.restart_needed == ()
    assert diff.summary() == "nothing"


def test_a_route_change_changes_only_its_listener() -> None:
    new = edited(listeners=[tcp_listener("redis", "cache"),
                            http_listener("web", {"/": "app", "/api": "cache"})])  # fmt: skip
    diff = diff_configs(parsed(BASE), parsed(new))
    assert diff.listeners == Changes(changed=("web",))
    assert not diff.clusters and not diff.components and diff.rebuilt == ()
    assert diff.summary() == "listeners: ~web"


def test_a_changed_cluster_rebuilds_the_listeners_that_name_it() -> None:
    new = edited(clusters=[cluster("cache", 6380), cluster("app", 8080)])
    diff = diff_configs(parsed(BASE), parsed(new))
    assert diff.clusters == Changes(changed=("cache",))
    assert diff.listeners == Changes()
    assert diff.rebuilt == ("redis",)  # not "web": its routes name only "app"
    assert diff.summary() == "clusters: ~cache; rebuilt for changed clusters: redis"


def test_a_listener_changed_itself_is_not_listed_as_rebuilt() -> None:
    new = edited(listeners=[tcp_listener("redis", "cache", port=7000), BASE["listeners"][1]],
                 clusters=[cluster("cache", 6380), cluster("app", 8080)])  # fmt: skip
    diff = diff_configs(parsed(BASE), parsed(new))
    assert diff.listeners.changed == ("redis",)
    assert diff.rebuilt == ()


def test_listeners_and_clusters_added_and_removed() -> None:
    new = edited(listeners=[http_listener("web", {"/": "app"}), tcp_listener("db", "pg")],
                 clusters=[cluster("app", 8080), cluster("pg", 5432)])  # fmt: skip
    diff = diff_configs(parsed(BASE), parsed(new))
    assert diff.listeners == Changes(added=("db",), removed=("redis",))
    assert diff.clusters == Changes(added=("pg",), removed=("cache",))


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        ([{"name": "pubsub", "type": "pubsub.in-memory"},
          {"name": "statestore", "type": "state.in-memory"}], Changes()),
        ([{"name": "statestore", "type": "state.in-memory", "metadata": {"keyPrefix": "name"}},
          {"name": "pubsub", "type": "pubsub.in-memory"}], Changes(changed=("statestore",))),
        ([{"name": "statestore", "type": "state.in-memory"},
          {"name": "lock", "type": "lock.in-memory"}],
         Changes(added=("lock",), removed=("pubsub",))),
    ],
    ids=["reordered", "metadata", "added-and-removed"],
)  # fmt: skip
def test_components_compare_by_spec_not_by_place(
    components: list[dict[str, Any]], expected: Changes
) -> None:
    new = edited(runtime={"app_id": "shop", "components": components})
    assert diff_configs(parsed(BASE), parsed(new)).components == expected


def test_settings_a_reload_cannot_apply_are_named() -> None:
    new = edited(admin={"address": "127.0.0.1:15001"},
                 runtime={**BASE["runtime"], "app_id": "store", "api_token": "t"})  # fmt: skip
    diff = diff_configs(parsed(BASE), parsed(new))
    assert diff.restart_needed == ("admin", "runtime.app_id", "runtime.api_token")
    assert diff.empty  # nothing a reload swaps


def test_adding_the_runtime_section_needs_a_restart() -> None:
    without = {key: value for key, value in BASE.items() if key != "runtime"}
    assert diff_configs(parsed(without), parsed(BASE)).restart_needed == ("runtime",)


def test_the_overload_section_needs_a_restart() -> None:
    new = edited(overload={"watermarks": {"stop_accepting": 0.8}})
    assert diff_configs(parsed(BASE), parsed(new)).restart_needed == ("overload",)


def test_drain_timeout_is_applied() -> None:
    diff = diff_configs(parsed(BASE), parsed(edited(drain_timeout="3s")))
    assert diff.drain_timeout and not diff.empty
    assert diff.summary() == "drain_timeout"


def test_strings_in_walks_nested_yaml() -> None:
    value = {"a": [1, "x", {"b": "y", "c": [True, "z"]}], "d": None}
    assert sorted(strings_in(value)) == ["x", "y", "z"]


def test_a_certificate_rotated_in_place_changes_its_listener(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue("server.test", dns=("server.test",))
    tls = {"cert_file": issued.cert.name, "key_file": issued.key.name}
    document = copy.deepcopy(BASE)
    document["listeners"][1]["tls"] = tls
    before = parse_config(document, tmp_path)
    assert diff_configs(before, parse_config(document, tmp_path)).empty
    ca.issue("server.test", dns=("server.test",))  # the same paths, new content
    diff = diff_configs(before, parse_config(document, tmp_path))
    assert diff.listeners == Changes(changed=("web",))
