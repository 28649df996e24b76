"""fault: delays on a manual clock, aborts, percentages (random patched), header control."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from filters.http import fault, registry
from filters.http.api import STOP, StreamFilterFactory
from filters.http.fault import AbortFault, DelayFault, FaultConfig, parse_config
from proxy.stream_info import ResponseFlag
from tests.unit.http_fakes import (
    CONFIG_PATH,
    FakeFactoryContext,
    FakeStream,
    make_request,
    parse,
    parse_ok,
)


@pytest.fixture
def dice(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Values fault's random draws return, in order (append before each draw)."""
    rolls: list[float] = []
    monkeypatch.setattr(fault, "_random", lambda: rolls.pop(0))
    return rolls


def factory(config: dict[str, Any]) -> StreamFilterFactory:
    return fault.create_factory(parse_ok(parse_config, config), FakeFactoryContext())


def run(
    make: StreamFilterFactory,
    headers: Iterable[tuple[bytes, bytes]] = (),
    per_route: dict[str, Any] | None = None,
) -> FakeStream:
    stream = FakeStream(request=make_request(headers=headers), per_route=per_route or {})
    stream.start(make)
    return stream


# -- config ---------------------------------------------------------------------------------


def test_parse_reads_delay_abort_and_defaults() -> None:
    config = parse_ok(
        parse_config,
        {"delay": {"fixed_delay": "1s", "percentage": 50},
         "abort": {"http_status": 503, "percentage": 0.5},
         "header_controlled": True, "max_active_faults": 10},
    )  # fmt: skip
    assert config == FaultConfig(DelayFault(1.0, 50.0), AbortFault(503, 0.5), True, 10)
    assert parse_ok(parse_config, {"abort": {"http_status": 500}}) == FaultConfig(
        abort=AbortFault(500, 100.0)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"abort": {"http_status": 503, "percentage": 150}},
         "abort.percentage: must be at most 100, got 150"),
        ({"abort": {"http_status": 503, "percentage": -1}},
         "abort.percentage: must be at least 0, got -1"),
        ({"abort": {"http_status": 99}}, "abort.http_status: must be at least 200, got 99"),
        ({"abort": {}}, "abort.http_status: required value is missing"),
        ({"delay": {"percentage": 5}}, "delay.fixed_delay: required value is missing"),
        ({"delay": {"fixed_delay": "0s"}}, "delay.fixed_delay: must be greater than zero"),
        ({"delay": {"fixed_delay": "1s", "jitter": 1}}, "delay.jitter: unknown key"),
        ({"delay": "1s"}, "delay: expected a mapping, got str"),
        ({"header_controlled": True, "max_active_faults": 0},
         "max_active_faults: must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_parse_problems_name_the_yaml_path(value: dict[str, Any], expected: str) -> None:
    _, problems = parse(parse_config, value)
    assert problems[0].startswith(f"{CONFIG_PATH}.{expected}")


def test_a_config_that_injects_nothing_is_reported() -> None:
    _, problems = parse(parse_config, {})
    assert problems == [
        f"{CONFIG_PATH}: configure at least one of: delay, abort, header_controlled"
    ]


def test_registered_with_a_per_route_parser() -> None:
    spec = registry.lookup("fault")
    assert spec is fault.SPEC
    assert spec.parse_per_route is parse_config


# -- delay ----------------------------------------------------------------------------------


def test_a_delay_holds_the_request_then_continues(dice: list[float]) -> None:
    stream = FakeStream(request=make_request())
    assert stream.start(factory({"delay": {"fixed_delay": "1s"}})) is STOP
    assert not stream.forwarded
    stream.advance(0.999)
    assert (stream.forwarded, stream.continued) == (False, 0)
    stream.advance(0.001)
    assert (stream.forwarded, stream.continued) == (True, 1)
    assert stream.local_replies == []


@pytest.mark.parametrize(
    ("percentage", "roll", "delayed"),
    [(50, 0.49, True), (50, 0.5, False), (0.5, 0.0049, True), (0.5, 0.0051, False)],
)
def test_delay_percentages_may_be_fractional(
    dice: list[float], percentage: float, roll: float, delayed: bool
) -> None:
    dice.append(roll)
    stream = run(factory({"delay": {"fixed_delay": "1s", "percentage": percentage}}))
    assert stream.forwarded is not delayed
    assert len(stream.pending_timers) == int(delayed)


def test_zero_and_hundred_percent_draw_nothing(dice: list[float]) -> None:
    assert run(factory({"delay": {"fixed_delay": "1s", "percentage": 0}})).forwarded
    assert not run(factory({"delay": {"fixed_delay": "1s", "percentage": 100}})).forwarded
    assert dice == []  # an empty list would raise IndexError on any draw


def test_a_stream_that_ends_while_delayed_cancels_the_timer(dice: list[float]) -> None:
    stream = run(factory({"delay": {"fixed_delay": "1s"}}))
    stream.finish()
    assert stream.pending_timers == []
    stream.advance(5)
    assert stream.continued == 0


def test_max_active_faults_bounds_requests_held_at_once(dice: list[float]) -> None:
    make = factory({"delay": {"fixed_delay": "1s"}, "max_active_faults": 1})
    first = run(make)
    assert not first.forwarded
    assert run(make).forwarded  # over the limit: not delayed
    first.finish()  # the held request went away: room again
    third = run(make)
    assert not third.forwarded
    third.advance(1)  # the delay ran out: room again
    assert third.forwarded
    assert not run(make).forwarded


# -- abort ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("roll", "aborted"), [(0.05, True), (0.1, False), (0.7, False)])
def test_abort_percentage(dice: list[float], roll: float, aborted: bool) -> None:
    dice.append(roll)
    stream = run(factory({"abort": {"http_status": 503, "percentage": 10}}))
    assert stream.forwarded is not aborted
    if aborted:
        reply = stream.reply
        assert (reply.status, reply.body, reply.flag, reply.details) == (
            503, b"fault filter abort\n", ResponseFlag.FAULT_INJECTED, "fault filter abort",
        )  # fmt: skip
        assert stream.info.failure_reason == "fault filter abort"
        assert stream.info.flags == {ResponseFlag.FAULT_INJECTED}


def test_a_delayed_request_is_then_considered_for_the_abort(dice: list[float]) -> None:
    stream = run(factory({"delay": {"fixed_delay": "2s"}, "abort": {"http_status": 502}}))
    assert stream.local_replies == []
    stream.advance(2)
    assert stream.reply.status == 502
    assert (stream.forwarded, stream.continued) == (False, 0)


# -- header control -------------------------------------------------------------------------


def test_headers_ask_for_an_abort_or_a_delay(dice: list[float]) -> None:
    make = factory({"header_controlled": True})
    assert run(make, [(b"x-envoy-fault-abort-request", b"418")]).reply.status == 418
    delayed = run(make, [(b"x-envoy-fault-delay-request", b"250")])
    assert not delayed.forwarded
    assert [t.due for t in delayed.pending_timers] == [0.25]
    assert run(make).forwarded


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-envoy-fault-abort-request", b"abc")],
        [(b"x-envoy-fault-abort-request", b"700")],
        [(b"x-envoy-fault-abort-request", b"-1")],
        [(b"x-envoy-fault-delay-request", b"1e3")],
        [(b"x-envoy-fault-abort-request", b"503"),
         (b"x-envoy-fault-abort-request-percentage", b"0")],
    ],
)  # fmt: skip
def test_malformed_or_zero_percent_fault_headers_inject_nothing(
    dice: list[float], headers: list[tuple[bytes, bytes]]
) -> None:
    stream = run(factory({"header_controlled": True}), headers)
    assert stream.forwarded
    assert stream.local_replies == []


def test_fault_headers_are_ignored_unless_header_controlled(dice: list[float]) -> None:
    dice.append(0.99)  # the configured 1% abort does not fire
    make = factory({"abort": {"http_status": 503, "percentage": 1}})
    stream = run(make, [(b"x-envoy-fault-abort-request", b"500")])
    assert stream.forwarded


def test_a_header_percentage_is_capped_by_the_configured_one(dice: list[float]) -> None:
    make = factory({"header_controlled": True, "abort": {"http_status": 503, "percentage": 10}})
    dice.append(0.5)
    headers = [(b"x-envoy-fault-abort-request", b"500"),
               (b"x-envoy-fault-abort-request-percentage", b"100")]  # fmt: skip
    assert run(make, headers).forwarded
    dice.append(0.05)
    assert run(make, headers).reply.status == 500  # the header's status wins


def test_a_header_percentage_applies_to_a_header_fault(dice: list[float]) -> None:
    make = factory({"header_controlled": True})
    headers = [(b"x-envoy-fault-delay-request", b"10"),
               (b"x-envoy-fault-delay-request-percentage", b"30")]  # fmt: skip
    dice.extend([0.29, 0.31])
    assert not run(make, headers).forwarded
    assert run(make, headers).forwarded


# -- per route ------------------------------------------------------------------------------


def test_a_route_config_replaces_the_filter_config(dice: list[float]) -> None:
    make = factory({"abort": {"http_status": 503}})
    route_config = parse_ok(parse_config, {"delay": {"fixed_delay": "1s"}})
    stream = run(make, per_route={"fault": route_config})
    assert stream.local_replies == []
    stream.advance(1)
    assert stream.forwarded  # no abort after the delay: the route's config has none
    assert run(make).reply.status == 503
