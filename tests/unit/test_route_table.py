"""Virtual host selection and route matching, without sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.http.route import RouteTable, parse_route_table
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import ConfigError, Node

CONTEXT = ParseContext(frozenset({"a", "b", "c"}))


def table(virtual_hosts: list[dict[str, Any]]) -> RouteTable:
    node = Node({"virtual_hosts": virtual_hosts})
    result = parse_route_table(node, CONTEXT)
    node.raise_if_problems()
    return result


def to(cluster: str, **match: Any) -> dict[str, Any]:
    return {"match": match or {"prefix": "/"}, "route": {"cluster": cluster}, "name": cluster}


def request(authority: str, path: str = "/", method: str = "GET", **headers: str) -> RequestHeaders:
    items = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return RequestHeaders(method.encode(), path.encode(), authority.encode(), Headers(items))


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("api.example.com", "exact"),
        ("api.example.com:8080", "exact"),
        ("x.example.com", "suffix"),
        ("deep.x.example.com", "suffix"),
        ("www.prefix", "prefix"),
        ("other.test", "default"),
        ("[::1]:80", "default"),
    ],
)
def test_virtual_host_precedence(authority: str, expected: str) -> None:
    routes = table([
        {"name": "default", "domains": ["*"], "routes": [to("a")]},
        {"name": "prefix", "domains": ["www.*"], "routes": [to("a")]},
        {"name": "suffix", "domains": ["*.example.com"], "routes": [to("a")]},
        {"name": "exact", "domains": ["api.example.com"], "routes": [to("a")]},
    ])  # fmt: skip
    vhost, _ = routes.find(request(authority))
    assert vhost is not None and vhost.name == expected


def test_no_virtual_host_means_no_route() -> None:
    routes = table([{"domains": ["only.test"], "routes": [to("a")]}])
    assert routes.find(request("else.test")) == (None, None)


def test_first_matching_route_wins_and_query_is_ignored() -> None:
    routes = table([{"routes": [
        to("a", path="/x"), to("b", regex="/items/[0-9]+"),
        to("c", prefix="/", methods=["POST"], headers=[{"name": "x-v", "prefix": "2"}]),
        to("a", prefix="/"),
    ]}])  # fmt: skip

    def cluster(*args: Any, **headers: str) -> str:
        _, route = routes.find(request("h", *args, **headers))
        assert route is not None and route.action is not None
        return route.action.clusters[0]

    assert cluster("/x?q=1") == "a"
    assert cluster("/items/7") == "b"
    assert cluster("/items/7x") == "a"
    assert cluster("/", "POST", x_v="2.1") == "c"
    assert cluster("/", "POST", x_v="1") == "a"


def test_route_config_problems_name_their_paths() -> None:
    node = Node({"virtual_hosts": [{"routes": [
        {"match": {"prefix": "/", "regex": "("}, "route": {"cluster": "nope"}},
        {"match": {"prefix": "/"}},
    ]}]})  # fmt: skip
    parse_route_table(node, CONTEXT)
    with pytest.raises(ConfigError) as caught:
        node.raise_if_problems()
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "virtual_hosts[0].routes[0].match: use only one of: prefix, path, regex" in text
    assert "virtual_hosts[0].routes[0].match.regex: invalid regex" in text
    assert "virtual_hosts[0].routes[0].route.cluster: unknown cluster 'nope'" in text
    assert "virtual_hosts[0].routes[1]: a route needs exactly one of" in text


PATHS = st.sampled_from(["/", "/a", "/A", "/a/", "/a/b", "/ab", "/b", "/B/c", "/api/v1", "/x"])
MATCHES = st.one_of(
    st.builds(lambda p: {"prefix": p}, PATHS),
    st.builds(lambda p: {"path": p}, PATHS),
    st.builds(lambda p: {"prefix": p, "case_sensitive": False}, PATHS),
    st.builds(lambda p: {"path": p, "case_sensitive": False}, PATHS),
    st.builds(lambda p: {"regex": p + ".*"}, PATHS),
    st.builds(lambda p: {"prefix": p, "headers": [{"name": "x-v", "exact": "1"}]}, PATHS),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(MATCHES, min_size=1, max_size=12), PATHS, st.sampled_from(["", "1"]))
def test_the_index_finds_what_a_scan_in_order_finds(
    matches: list[dict[str, Any]], path: str, version: str
) -> None:
    routes = [
        {"match": m, "route": {"cluster": "a"}, "name": str(i)} for i, m in enumerate(matches)
    ]
    vhost, _ = table([{"domains": ["*"], "routes": routes}]).find(request("h"))
    assert vhost is not None
    probe = request("h", path + "?q=1", **({"x_v": version} if version else {}))
    expected = next((r for r in vhost.routes if r.match.matches(probe, path.encode())), None)
    for _ in range(2):  # the second lookup may come from the per-path cache
        assert vhost.index.find(probe, path.encode()) is expected


def test_a_large_table_answers_from_the_index() -> None:
    routes = [to("a", prefix=f"/svc-{i}/") for i in range(5000)]
    vhost, route = table([{"domains": ["*"], "routes": routes}]).find(
        request("h", "/svc-4999/items?x")
    )
    assert vhost is not None and route is vhost.routes[4999]
