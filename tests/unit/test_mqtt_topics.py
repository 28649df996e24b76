"""Topic names, topic filters and matching: the examples of MQTT 3.1.1 section 4.7 and
MQTT 5.0 sections 4.7-4.8, and TopicMatcher checked against `matches` on generated filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mqtt.topics import (
    TopicMatcher,
    is_topic_filter,
    is_topic_name,
    matches,
    split_shared,
)

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


def reference(topic_filter: str, topic: str) -> bool:
    """Matching written a second way: recursively, level by level."""

    def go(parts: list[str], levels: list[str]) -> bool:
        if not parts:
            return not levels
        if parts[0] == "#":
            return True
        if not levels:
            return False
        return parts[0] in ("+", levels[0]) and go(parts[1:], levels[1:])

    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    return go(topic_filter.split("/"), topic.split("/"))


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
