"""header_mutation: request and response add / set / remove, local replies, per-route override."""

from __future__ import annotations

from typing import Any

import pytest

from filters.http import header_mutation, registry
from filters.http.api import CONTINUE, STOP, FilterStatus, StreamFilter, StreamFilterFactory
from filters.http.header_mutation import parse_config
from protocols.http.events import RequestHeaders
from tests.unit.http_fakes import (
    CONFIG_PATH,
    FakeFactoryContext,
    FakeStream,
    make_request,
    parse,
    parse_ok,
)


def factory(config: dict[str, Any]) -> StreamFilterFactory:
    return header_mutation.create_factory(parse_ok(parse_config, config), FakeFactoryContext())


def run(
    make: StreamFilterFactory,
    headers: list[tuple[bytes, bytes]] | None = None,
    per_route: dict[str, Any] | None = None,
) -> FakeStream:
    stream = FakeStream(request=make_request(headers=headers or []), per_route=per_route or {})
    stream.start(make)
    return stream


CONFIG = {
    "request": {
        "add": [{"name": "X-Team", "value": "payments"},
                {"name": "x-tag", "value": "b", "append": False}],
        "set": [{"name": "x-env", "value": "prod"}],
        "remove": ["x-debug"],
    },
    "response": {"add": [{"name": "x-served-by", "value": "mecha"}], "remove": ["server"]},
}  # fmt: skip


def test_request_headers_are_removed_added_and_set() -> None:
    stream = run(
        factory(CONFIG),
        [(b"x-team", b"core"), (b"x-tag", b"a"), (b"x-tag", b"a2"), (b"x-env", b"dev"),
         (b"x-debug", b"1"), (b"x-debug", b"2")],
    )  # fmt: skip
    headers = stream.request.headers
    assert stream.forwarded
    assert headers.get_all(b"x-team") == [b"core", b"payments"]  # append keeps the old one
    assert headers.get_all(b"x-tag") == [b"b"]
    assert headers.get_all(b"x-env") == [b"prod"]
    assert b"x-debug" not in headers
    assert headers.get(b"host") == b"example.com"


def test_response_headers_are_changed() -> None:
    stream = run(factory(CONFIG))
    sent = stream.respond(200, [(b"server", b"nginx"), (b"content-type", b"text/html")])
    assert sent.items == [(b"content-type", b"text/html"), (b"x-served-by", b"mecha")]


class Refuse(StreamFilter):
    """A later decoder that answers locally."""

    __slots__ = ("callbacks",)

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        self.callbacks.send_local_reply(429, b"slow down\n")
        return STOP


def test_local_replies_get_response_mutations_too() -> None:
    stream = FakeStream(request=make_request())
    stream.start(factory(CONFIG), Refuse)
    assert stream.response.status == 429
    assert stream.response.headers.get(b"x-served-by") == b"mecha"


def test_informational_heads_are_left_alone() -> None:
    assert b"x-served-by" not in run(factory(CONFIG)).respond(100)


def test_a_route_config_replaces_the_filter_config() -> None:
    make = factory(CONFIG)
    route_config = parse_ok(parse_config, {"request": {"set": [{"name": "x-env", "value": "qa"}]}})
    stream = run(make, [(b"x-debug", b"1")], per_route={"header_mutation": route_config})
    assert stream.request.headers.get(b"x-env") == b"qa"
    assert stream.request.headers.get(b"x-debug") == b"1"  # the filter-level remove is gone
    assert b"x-served-by" not in stream.respond()


def test_a_filter_with_only_response_changes_leaves_requests_alone() -> None:
    stream = run(factory({"response": {"remove": ["server"]}}), [(b"x-a", b"1")])
    assert stream.request.headers.items == [(b"host", b"example.com"), (b"x-a", b"1")]
    assert stream.filters[0].decode_headers(stream.request, True) is CONTINUE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, ": configure at least one of: request, response"),
        ({"request": {"add": [{"name": "bad name", "value": "x"}]}},
         ".request.add[0].name: 'bad name' is not a valid header name"),
        ({"request": {"add": [{"name": ":path", "value": "/x"}]}},
         ".request.add[0].name: ':path' is not a valid header name"),
        ({"request": {"add": [{"name": "x-a", "value": "1\r\nx-evil: 1"}]}},
         ".request.add[0].value: a header value must not contain control characters"),
        ({"request": {"add": [{"name": "x-a"}]}}, ".request.add[0].value: required value"),
        ({"request": {"set": [{"name": "x-a", "value": "1", "append": True}]}},
         ".request.set[0].append: unknown key"),
        ({"request": {"set": [{"name": "Host", "value": "evil"}]}},
         ".request.set[0].name: host cannot be changed here"),
        ({"response": {"remove": ["content-length"]}},
         ".response.remove: content-length cannot be removed here"),
        ({"response": {"add": ["x-a: 1"]}}, ".response.add[0]: expected a mapping, got str"),
        ({"response": {"remove": "server, date", "rename": []}}, ".response.rename: unknown key"),
        ({"response": {"remove": [1]}}, ".response.remove[0]: expected a string, got int"),
    ],
)  # fmt: skip
def test_parse_problems_name_the_yaml_path(value: dict[str, Any], expected: str) -> None:
    _, problems = parse(parse_config, value)
    assert problems[0].startswith(CONFIG_PATH + expected), problems


def test_remove_accepts_a_comma_separated_string() -> None:
    config = parse_ok(parse_config, {"response": {"remove": "Server, Date"}})
    assert config.response.remove == (b"server", b"date")


def test_registered_with_a_per_route_parser() -> None:
    spec = registry.lookup("header_mutation")
    assert spec is header_mutation.SPEC
    assert spec.parse_per_route is parse_config
