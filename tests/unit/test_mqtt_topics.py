"""Topic names, topic filters and matching: the examples of MQTT 3.1.1 section 4.7 and
MQTT 5.0 sections 4.7-4.8, TopicMatcher checked against `matches` on generated filters, and
`overlap` / `covers` checked against every topic a brute-force search can build."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mqtt.topics import (
    TopicMatcher,
    covers,
    is_topic_filter,
    is_topic_name,
    matches,
    overlap,
    split_shared,
)
from tests.unit.mqtt_reference import LITERALS, SHORT_FILTERS, all_topics, reference

TOPIC_NAMES = [
    ("sport/tennis/player1", True), ("/", True), ("//", True), ("/finance", True),
    ("$SYS/monitor/Clients", True), (" ", True), ("ACCOUNTS", True),
    ("a b/c\u00e9\U0001f600", True),
    ("x" * 65_535, True), ("\u00e9" * 32_767, True),
    ("", False), ("sport/+", False), ("sport/#", False), ("a+b", False), ("a\x00b", False),
    ("\ud800", False), ("x" * 65_536, False), ("\u00e9" * 32_768, False),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "valid"), TOPIC_NAMES)
def test_topic_names(topic: str, valid: bool) -> None:
    assert is_topic_name(topic) is valid


TOPIC_FILTERS = [
    # MQTT 4.7.1.2 / 4.7.1.3: valid
    ("sport/tennis/player1/#", True), ("sport/#", True), ("#", True), ("+", True),
    ("+/tennis/#", True), ("sport/+/player1", True), ("/+", True), ("+/+", True),
    ("$SYS/#", True), ("a//b", True), ("/", True),
    # ... and not
    ("sport/tennis#", False), ("sport/tennis/#/ranking", False), ("sport+", False),
    ("#/", False), ("+a/b", False), ("a/b+", False), ("", False), ("a\x00", False),
    ("\udfff/#", False),
]  # fmt: skip


@pytest.mark.parametrize(("topic_filter", "valid"), TOPIC_FILTERS)
def test_topic_filters(topic_filter: str, valid: bool) -> None:
    assert is_topic_filter(topic_filter) is valid
    assert is_topic_filter(topic_filter, shared=False) is valid


SHARED = [
    ("$share/group/sport/#", ("group", "sport/#")), ("$share/g/+", ("g", "+")),
    ("$share/g//", ("g", "/")), ("$share/g", None), ("$share/g/", None),
    ("$share//a", None), ("$share/g+/a", None), ("$share/#/a", None), ("$shared/g/a", None),
    ("sport/#", None),
]  # fmt: skip


@pytest.mark.parametrize(("topic_filter", "parts"), SHARED)
def test_shared_subscriptions(topic_filter: str, parts: tuple[str, str] | None) -> None:
    assert split_shared(topic_filter) == parts
    if topic_filter.startswith("$share/"):
        assert is_topic_filter(topic_filter) is (parts is not None)
        # 3.1.1: an ordinary filter, where only misplaced wildcards are invalid
        wild = topic_filter in ("$share/g+/a", "$share/#/a")
        assert is_topic_filter(topic_filter, shared=False) is not wild


def test_shared_subscription_with_invalid_filter() -> None:
    assert not is_topic_filter("$share/g/a/#/b")
    assert not is_topic_filter("$share/g/a+")


MATCHES = [
    # 4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("sport/tennis/#", "sport/tennisplayer1", False),
    # 4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    # 4.7.2 topics beginning with $
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("+", "$SYS", False),
    ("a/+", "a/$b", True),
    # 4.7.3 case sensitive, spaces are characters, empty levels are levels
    ("ACCOUNTS", "Accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a/b/", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected
    matcher: TopicMatcher[int] = TopicMatcher()
    matcher.add(topic_filter, 1)
    assert matcher.match(topic) == ([1] if expected else [])


def test_matcher_many_filters() -> None:
    matcher: TopicMatcher[str] = TopicMatcher()
    for topic_filter in ("sport/#", "sport/tennis/+", "#", "+/+", "$SYS/#", "sport/tennis/x"):
        matcher.add(topic_filter, topic_filter)
    matcher.add("sport/#", "again")
    assert len(matcher) == 7
    assert sorted(matcher.match("sport/tennis/x")) == sorted(
        ["sport/#", "again", "sport/tennis/+", "#", "sport/tennis/x"]
    )
    assert sorted(matcher.match("sport/golf")) == ["#", "+/+", "again", "sport/#"]
    assert matcher.match("$SYS/load") == ["$SYS/#"]
    assert matcher.remove("sport/#", "again")
    assert not matcher.remove("sport/#", "again")
    assert not matcher.remove("no/such/filter", "x")
    assert sorted(matcher.match("sport")) == ["#", "sport/#"]
    for topic_filter in ("sport/#", "sport/tennis/+", "#", "+/+", "$SYS/#", "sport/tennis/x"):
        assert matcher.remove(topic_filter, topic_filter)
    assert len(matcher) == 0
    assert matcher.match("sport/tennis/x") == []
    assert not matcher._root.children  # pruned


def test_matcher_refuses_invalid_filters() -> None:
    matcher: TopicMatcher[int] = TopicMatcher()
    with pytest.raises(ValueError):
        matcher.add("a/#/b", 1)


# -- generated -------------------------------------------------------------------------------

LEVELS = st.sampled_from(["a", "b", "", "$x", "$SYS"])
TOPICS = st.lists(LEVELS, min_size=1, max_size=4).map("/".join).filter(bool)
FILTERS = st.builds(
    lambda levels, tail: "/".join(levels + tail),
    st.lists(st.one_of(LEVELS, st.just("+")), min_size=0, max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(bool)


@settings(max_examples=200, deadline=None)
@given(st.lists(FILTERS, max_size=12), st.lists(TOPICS, min_size=1, max_size=6))
def test_matcher_agrees_with_matches(filters: list[str], topics: list[str]) -> None:
    matcher: TopicMatcher[int] = TopicMatcher()
    for i, topic_filter in enumerate(filters):
        assert is_topic_filter(topic_filter)
        matcher.add(topic_filter, i)
    for topic in topics:
        expected = [i for i, f in enumerate(filters) if reference(f, topic)]
        assert [i for i, f in enumerate(filters) if matches(f, topic)] == expected
        assert sorted(matcher.match(topic)) == expected
    for i, topic_filter in enumerate(filters):
        assert matcher.remove(topic_filter, i)
    assert len(matcher) == 0 and not matcher._root.children


# -- two filters: overlap and covers ----------------------------------------------------------

FILTER_PAIRS = [
    # (first, second, some topic matches both, first matches all that second matches)
    ("#", "+/+", True, True), ("#", "a/+", True, True), ("+/+", "a/+", True, True),
    ("a/#", "a", True, True), ("a/#", "a/b/c", True, True), ("a/+", "a/#", True, False),
    ("a/b/#", "a", False, False), ("+", "+/#", True, False), ("a/+", "b/+", False, False),
    ("a//b", "a/+/b", True, False), ("a/+/b", "a//b", True, True),
    ("+/#", "#", True, True), ("a/+/#", "a/#", True, False), ("+/+/#", "#", True, False),
    # "" is no topic name: `/#` matches "/" and "/a", not ""; `+` matches "a", not ""
    ("+", "/#", False, False), ("/#", "+", False, False), ("+/+/#", "/#", True, True),
    ("/+/#", "/#", True, True), ("+/#", "/#", True, True),
    # 4.7.2: a filter starting with a wildcard matches no topic starting with $
    ("$SYS/#", "#", False, False), ("$SYS/#", "+/+", False, False),
    ("$SYS/#", "+/#", False, False), ("#", "$SYS/#", False, False),
    ("+/monitor", "$SYS/monitor", False, False), ("$SYS/#", "$SYS/+", True, True),
    ("$SYS/+", "$SYS/#", True, False), ("#", "$SYS", False, False),
    ("a/#", "a/$b", True, True), ("+/+", "a/$b", True, True), ("$x", "$x", True, True),
]  # fmt: skip


@pytest.mark.parametrize(("first", "second", "overlapping", "covering"), FILTER_PAIRS)
def test_overlap_and_covers(first: str, second: str, overlapping: bool, covering: bool) -> None:
    assert overlap(first, second) is overlapping
    assert overlap(second, first) is overlapping
    assert covers(first, second) is covering


BRUTE_TOPICS = all_topics([*LITERALS, "z", "$z"], 4)


def brute_force_agrees(first: str, second: str, topics: list[str]) -> None:
    firsts = {topic for topic in topics if reference(first, topic)}
    seconds = {topic for topic in topics if reference(second, topic)}
    assert overlap(first, second) is bool(firsts & seconds)
    assert covers(first, second) is (seconds <= firsts)


@settings(max_examples=300, deadline=None)
@given(SHORT_FILTERS, SHORT_FILTERS)
def test_overlap_and_covers_agree_with_brute_force(first: str, second: str) -> None:
    brute_force_agrees(first, second, BRUTE_TOPICS)


def test_overlap_and_covers_on_every_pair_of_small_filters() -> None:
    """Every filter of up to two levels and `#` over a, "", $x, +: all pairs."""
    levels = ["a", "", "$x", "+"]
    heads: list[list[str]] = [[]] + [[x] for x in levels] + [[x, y] for x in levels for y in levels]
    filters = [f for head in heads for tail in ([], ["#"]) if (f := "/".join(head + tail))]
    topics = all_topics(["a", "", "$x", "z", "$z"], 3)
    matched = {f: {topic for topic in topics if reference(f, topic)} for f in filters}
    for first in filters:
        for second in filters:
            both = matched[first] & matched[second]
            assert overlap(first, second) is bool(both), (first, second)
            assert covers(first, second) is (matched[second] <= matched[first]), (first, second)
