"""local_ratelimit: config problems by path, the token bucket over (fake) time, sharing, headers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from filters.http import local_ratelimit, registry
from filters.http.api import StreamFilterFactory
from filters.http.local_ratelimit import LocalRateLimitConfig, parse_config
from filters.http.route import parse_route_table
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag
from tests.unit.http_fakes import CONFIG_PATH, FakeFactoryContext, FakeStream, ManualClock, parse


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    fake = ManualClock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


def factory(**config: Any) -> StreamFilterFactory:
    parsed, problems = parse(parse_config, config)
    assert problems == []
    return local_ratelimit.create_factory(parsed, FakeFactoryContext())


def request(make: StreamFilterFactory, per_route: dict[str, Any] | None = None) -> FakeStream:
    stream = FakeStream(per_route=per_route or {})
    stream.start(make)
    return stream


def allowed(make: StreamFilterFactory, count: int, **kwargs: Any) -> list[bool]:
    return [request(make, **kwargs).forwarded for _ in range(count)]


# -- config ---------------------------------------------------------------------------------


def test_parse_reads_every_field_and_defaults() -> None:
    config, problems = parse(parse_config, {"max_tokens": 10, "fill_interval": "250ms"})
    assert problems == []
    assert config == LocalRateLimitConfig(max_tokens=10, tokens_per_fill=1, fill_interval=0.25)
    config, _ = parse(
        parse_config,
        {"max_tokens": 5, "tokens_per_fill": 2, "fill_interval": 2,
         "enable_x_ratelimit_headers": True},
    )  # fmt: skip
    assert config == LocalRateLimitConfig(5, 2, 2.0, True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"max_tokens": 0, "fill_interval": "1s"}, "max_tokens: must be at least 1, got 0"),
        ({"max_tokens": 1, "fill_interval": "1s", "tokens_per_fill": 0},
         "tokens_per_fill: must be at least 1, got 0"),
        ({"max_tokens": 1, "fill_interval": "0s"}, "fill_interval: must be greater than zero"),
        ({"max_tokens": 1, "fill_interval": "soon"}, "fill_interval: expected a duration"),
        ({"fill_interval": "1s"}, "max_tokens: required value is missing"),
        ({"max_tokens": 1}, "fill_interval: required value is missing"),
        ({"max_tokens": "ten", "fill_interval": "1s"}, "max_tokens: expected an integer"),
        ({"max_tokens": 1, "fill_interval": "1s", "enable_x_ratelimit_headers": "yes"},
         "enable_x_ratelimit_headers: expected true or false"),
        ({"max_tokens": 1, "fill_interval": "1s", "burst": 3}, "burst: unknown key"),
    ],
)  # fmt: skip
def test_parse_problems_name_the_yaml_path(value: dict[str, Any], expected: str) -> None:
    _, problems = parse(parse_config, value)
    assert len(problems) == 1
    assert problems[0].startswith(f"{CONFIG_PATH}.{expected}")


def test_per_route_problems_carry_the_route_path() -> None:
    node = Node(
        {"virtual_hosts": [{"routes": [{
            "match": {"prefix": "/"},
            "direct_response": {"status": 200},
            "filters": {"local_ratelimit": {"max_tokens": 0, "fill_interval": "1s"}},
        }]}]},
        "route_config",
    )  # fmt: skip
    parse_route_table(node, ParseContext(frozenset()))
    assert [str(p) for p in node.problems] == [
        "route_config.virtual_hosts[0].routes[0].filters.local_ratelimit.max_tokens: "
        "must be at least 1, got 0"
    ]


def test_registered_under_its_name_with_a_per_route_parser() -> None:
    spec = registry.lookup("local_ratelimit")
    assert spec is local_ratelimit.SPEC
    assert spec.parse_per_route is parse_config


# -- the bucket -----------------------------------------------------------------------------


def test_over_the_limit_answers_429_with_flag_rl(clock: ManualClock) -> None:
    make = factory(max_tokens=2, fill_interval="1s")
    assert allowed(make, 2) == [True, True]
    stream = request(make)
    assert not stream.forwarded
    reply = stream.reply
    assert (reply.status, reply.body, reply.flag) == (
        429, b"local rate limited\n", ResponseFlag.RATE_LIMITED,
    )  # fmt: skip
    assert reply.details == "local rate limited"
    assert stream.info.flags == {ResponseFlag.RATE_LIMITED}
    assert stream.info.failure_reason == "local rate limited"


def test_tokens_come_back_in_whole_fill_intervals(clock: ManualClock) -> None:
    make = factory(max_tokens=2, fill_interval="1s")
    assert allowed(make, 3) == [True, True, False]
    clock.advance(0.999)
    assert allowed(make, 1) == [False]
    clock.advance(0.001)
    assert allowed(make, 2) == [True, False]


def test_the_bucket_never_holds_more_than_max_tokens(clock: ManualClock) -> None:
    make = factory(max_tokens=3, tokens_per_fill=1, fill_interval="1s")
    assert allowed(make, 3) == [True, True, True]
    clock.advance(3600)
    assert allowed(make, 4) == [True, True, True, False]


def test_fills_keep_their_cadence_whatever_the_request_times(clock: ManualClock) -> None:
    make = factory(max_tokens=10, tokens_per_fill=2, fill_interval="1s")
    assert allowed(make, 11).count(True) == 10
    clock.advance(2.5)  # two fills: 4 tokens; the next fill is 0.5s away, not 1s
    assert allowed(make, 5) == [True, True, True, True, False]
    clock.advance(0.5)
    assert allowed(make, 3) == [True, True, False]


def test_one_bucket_per_factory_shared_by_its_streams(clock: ManualClock) -> None:
    first = factory(max_tokens=1, fill_interval="1m")
    second = factory(max_tokens=1, fill_interval="1m")
    assert allowed(first, 2) == [True, False]
    assert allowed(second, 2) == [True, False]


# -- per route ------------------------------------------------------------------------------


def test_a_route_config_has_its_own_bucket_made_once(clock: ManualClock) -> None:
    make = factory(max_tokens=1, fill_interval="1m")
    route_config, _ = parse(parse_config, {"max_tokens": 2, "fill_interval": "1m"})
    on_route = {"local_ratelimit": route_config}
    assert allowed(make, 3, per_route=on_route) == [True, True, False]
    assert allowed(make, 2) == [True, False]  # the listener bucket was untouched
    # An equal config on another route is another bucket.
    other_route, _ = parse(parse_config, {"max_tokens": 2, "fill_interval": "1m"})
    assert allowed(make, 3, per_route={"local_ratelimit": other_route}) == [True, True, False]
    clock.advance(60)  # one fill of one token into the same (not a fresh, full) bucket
    assert allowed(make, 2, per_route=on_route) == [True, False]


def test_a_route_without_an_override_uses_the_listener_bucket(clock: ManualClock) -> None:
    make = factory(max_tokens=1, fill_interval="1m")
    assert allowed(make, 2, per_route={"fault": object()}) == [True, False]


# -- x-ratelimit headers --------------------------------------------------------------------


def test_headers_report_limit_remaining_and_reset(clock: ManualClock) -> None:
    make = factory(max_tokens=2, fill_interval="10s", enable_x_ratelimit_headers=True)
    stream = request(make)
    clock.advance(2.5)  # the response comes later; values are those of the request
    headers = stream.respond(200, [(b"x-ratelimit-remaining", b"999")])
    assert headers.get_all(b"x-ratelimit-limit") == [b"2"]
    assert headers.get_all(b"x-ratelimit-remaining") == [b"1"]
    assert headers.get(b"x-ratelimit-reset") == b"10"

    clock.advance(4.0)  # 6.5s into the interval
    assert request(make).respond().get(b"x-ratelimit-remaining") == b"0"
    limited = request(make)
    assert limited.reply.status == 429
    sent = limited.response.headers
    assert (sent.get(b"x-ratelimit-remaining"), sent.get(b"x-ratelimit-reset")) == (b"0", b"4")


def test_no_headers_and_no_encoder_when_disabled(clock: ManualClock) -> None:
    make = factory(max_tokens=2, fill_interval="1s")
    stream = request(make)
    assert not stream.filters[0].encodes
    assert b"x-ratelimit-limit" not in stream.respond()


def test_a_route_may_turn_headers_on(clock: ManualClock) -> None:
    make = factory(max_tokens=5, fill_interval="1s")
    route_config, _ = parse(
        parse_config, {"max_tokens": 3, "fill_interval": "1s", "enable_x_ratelimit_headers": True}
    )
    stream = request(make, per_route={"local_ratelimit": route_config})
    headers = stream.respond()
    assert (headers.get(b"x-ratelimit-limit"), headers.get(b"x-ratelimit-remaining")) == (
        b"3", b"2",
    )  # fmt: skip


def test_informational_heads_get_no_headers(clock: ManualClock) -> None:
    make = factory(max_tokens=5, fill_interval="1s", enable_x_ratelimit_headers=True)
    assert b"x-ratelimit-limit" not in request(make).respond(100)
