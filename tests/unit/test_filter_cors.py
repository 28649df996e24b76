"""cors: preflights answered here, simple requests decorated, other origins left bare."""

from __future__ import annotations

from typing import Any

import pytest

from filters.http import auth, cors, registry
from filters.http.api import StreamFilterFactory
from filters.http.cors import CorsConfig, parse_config
from tests.unit.http_fakes import (
    CONFIG_PATH,
    FakeFactoryContext,
    FakeStream,
    make_request,
    parse,
    parse_ok,
)

APP = b"https://app.example.com"
EVIL = b"https://evil.example.net"
CONFIG = {
    "allow_origin": ["https://app.example.com"],
    "allow_origin_regex": [r"https://[a-z]+\.preview\.example\.com"],
    "allow_methods": ["GET", "post"],
    "allow_headers": "Content-Type, Authorization",
    "expose_headers": ["x-request-id"],
    "max_age": "10m",
}


def factory(config: dict[str, Any] = CONFIG) -> StreamFilterFactory:
    return cors.create_factory(parse_ok(parse_config, config), FakeFactoryContext())


def preflight(origin: bytes = APP) -> list[tuple[bytes, bytes]]:
    return [(b"origin", origin), (b"access-control-request-method", b"POST"),
            (b"access-control-request-headers", b"content-type")]  # fmt: skip


def run(
    *makes: StreamFilterFactory,
    method: bytes = b"GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    per_route: dict[str, Any] | None = None,
) -> FakeStream:
    request = make_request(method, headers=headers or [])
    stream = FakeStream(request=request, per_route=per_route or {})
    stream.start(*makes)
    return stream


# -- preflight ------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_here() -> None:
    stream = run(factory(), method=b"OPTIONS", headers=preflight())
    assert not stream.forwarded
    assert stream.reply.status == 200
    sent = stream.response.headers
    assert sent.get(b"access-control-allow-origin") == APP
    assert sent.get(b"access-control-allow-methods") == b"GET, POST"
    assert sent.get(b"access-control-allow-headers") == b"content-type, authorization"
    assert sent.get(b"access-control-max-age") == b"600"
    assert sent.get(b"vary") == b"origin"
    assert b"access-control-allow-credentials" not in sent
    assert b"access-control-expose-headers" not in sent  # only on actual responses
    assert sent.get_all(b"access-control-allow-origin") == [APP]  # not added twice on the way out
    assert stream.info.failure_reason is None  # an answered preflight is no failure


def test_an_origin_matching_a_regex_is_allowed() -> None:
    origin = b"https://review.preview.example.com"
    stream = run(factory(), method=b"OPTIONS", headers=preflight(origin))
    assert stream.response.headers.get(b"access-control-allow-origin") == origin
    # fullmatch: a suffix after the pattern does not pass
    assert run(factory(), method=b"OPTIONS", headers=preflight(origin + b".evil.net")).forwarded


def test_a_preflight_from_another_origin_goes_upstream_without_cors_headers() -> None:
    stream = run(factory(), method=b"OPTIONS", headers=preflight(EVIL))
    assert stream.forwarded
    assert stream.local_replies == []
    assert not any(name.startswith(b"access-control-") for name, _ in stream.respond(204))


def test_a_preflight_from_another_origin_may_be_answered_bare() -> None:
    stream = run(
        factory({**CONFIG, "forward_not_matching_preflights": False}),
        method=b"OPTIONS", headers=preflight(EVIL),
    )  # fmt: skip
    assert stream.reply.status == 200
    assert not any(name.startswith(b"access-control-") for name, _ in stream.response.headers)


def test_options_without_a_request_method_is_an_ordinary_request() -> None:
    stream = run(factory(), method=b"OPTIONS", headers=[(b"origin", APP)])
    assert stream.forwarded
    assert stream.respond().get(b"access-control-allow-origin") == APP


# -- actual requests ------------------------------------------------------------------------


def test_a_request_from_an_allowed_origin_gets_cors_headers_on_its_response() -> None:
    stream = run(factory(), method=b"POST", headers=[(b"origin", APP)])
    assert stream.forwarded
    sent = stream.respond(201, [(b"vary", b"Accept-Encoding"),
                                (b"access-control-allow-origin", b"*")])  # fmt: skip
    assert sent.get_all(b"access-control-allow-origin") == [APP]  # replaces upstream's
    assert sent.get(b"access-control-expose-headers") == b"x-request-id"
    assert sent.get_all(b"vary") == [b"Accept-Encoding", b"origin"]
    assert b"access-control-allow-methods" not in sent


def test_vary_is_not_repeated() -> None:
    stream = run(factory(), headers=[(b"origin", APP)])
    assert stream.respond(200, [(b"vary", b"Origin, Accept")]).get_all(b"vary") == [
        b"Origin, Accept"
    ]


def test_a_request_from_another_origin_gets_no_cors_headers() -> None:
    stream = run(factory(), headers=[(b"origin", EVIL)])
    assert stream.forwarded
    sent = stream.respond()
    assert b"access-control-allow-origin" not in sent
    assert b"vary" not in sent


def test_a_request_without_origin_is_not_cors() -> None:
    stream = run(factory())
    assert stream.forwarded
    assert stream.respond().items == []


def test_credentials_are_announced_and_the_origin_is_echoed_even_for_star() -> None:
    make = factory({"allow_origin": "*", "allow_credentials": True})
    stream = run(make, headers=[(b"origin", EVIL)])
    sent = stream.respond()
    assert sent.get(b"access-control-allow-origin") == EVIL
    assert sent.get(b"access-control-allow-credentials") == b"true"
    preflight_reply = run(make, method=b"OPTIONS", headers=preflight(EVIL)).response.headers
    assert preflight_reply.get(b"access-control-allow-credentials") == b"true"


def test_star_without_credentials_answers_star() -> None:
    stream = run(factory({"allow_origin": ["*"]}), headers=[(b"origin", EVIL)])
    sent = stream.respond()
    assert sent.get(b"access-control-allow-origin") == b"*"
    assert b"vary" not in sent


def test_a_refusal_by_a_later_filter_is_readable_by_the_page() -> None:
    refuse = auth.create_factory(
        parse_ok(auth.parse_config, {"bearer_tokens": ["t0k3n"]}), FakeFactoryContext()
    )
    stream = run(factory(), refuse, headers=[(b"origin", APP)])
    assert stream.reply.status == 401
    assert stream.response.headers.get(b"access-control-allow-origin") == APP


def test_an_answer_from_an_earlier_filter_is_decorated_from_the_request() -> None:
    refuse = auth.create_factory(
        parse_ok(auth.parse_config, {"bearer_tokens": ["t0k3n"]}), FakeFactoryContext()
    )
    allowed = run(refuse, factory(), headers=[(b"origin", APP)])
    assert allowed.response.headers.get(b"access-control-allow-origin") == APP
    other = run(refuse, factory(), headers=[(b"origin", EVIL)])
    assert b"access-control-allow-origin" not in other.response.headers


# -- per route ------------------------------------------------------------------------------


def test_a_route_config_replaces_the_filter_config() -> None:
    route_config = parse_ok(parse_config, {"allow_origin": ["https://admin.example.com"]})
    on_route = {"cors": route_config}
    stream = run(factory(), headers=[(b"origin", APP)], per_route=on_route)
    assert b"access-control-allow-origin" not in stream.respond()
    admin = b"https://admin.example.com"
    stream = run(factory(), method=b"OPTIONS", headers=preflight(admin), per_route=on_route)
    assert stream.response.headers.get(b"access-control-allow-origin") == admin
    assert b"access-control-allow-methods" not in stream.response.headers


# -- config ---------------------------------------------------------------------------------


def test_parse_normalises_lists() -> None:
    config = parse_ok(parse_config, CONFIG)
    assert config == CorsConfig(
        allow_origin=frozenset({APP}),
        allow_origin_regex=config.allow_origin_regex,
        allow_methods=(b"GET", b"POST"),
        allow_headers=(b"content-type", b"authorization"),
        expose_headers=(b"x-request-id",),
        max_age=600,
    )
    assert [p.pattern for p in config.allow_origin_regex] == [
        rb"https://[a-z]+\.preview\.example\.com"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, ": configure allow_origin or allow_origin_regex"),
        ({"allow_origin": ["https://a.example.com/"]},
         ".allow_origin: 'https://a.example.com/': an origin is scheme://host[:port]"),
        ({"allow_origin_regex": ["https://(a"]}, ".allow_origin_regex[0]: invalid regex"),
        ({"allow_origin": "*", "allow_methods": ["GET POST"]},
         ".allow_methods: 'GET POST' is not an HTTP method"),
        ({"allow_origin": "*", "allow_headers": ["x a"]},
         ".allow_headers: 'x a' is not a valid header name"),
        ({"allow_origin": "*", "max_age": "forever"}, ".max_age: expected a duration"),
        ({"allow_origin": "*", "allow_credentials": "yes"},
         ".allow_credentials: expected true or false"),
        ({"allow_origin": "*", "allow_origins": []}, ".allow_origins: unknown key"),
        ({"allow_origin": {"exact": "x"}},
         ".allow_origin: expected a list of strings or one comma-separated string"),
    ],
)  # fmt: skip
def test_parse_problems_name_the_yaml_path(value: dict[str, Any], expected: str) -> None:
    _, problems = parse(parse_config, value)
    assert any(p.startswith(CONFIG_PATH + expected) for p in problems), problems


def test_registered_with_a_per_route_parser() -> None:
    spec = registry.lookup("cors")
    assert spec is cors.SPEC
    assert spec.parse_per_route is parse_config
