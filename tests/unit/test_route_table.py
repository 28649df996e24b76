"""Virtual host selection and route matching, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

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
