"""Topic matching written a second way, and the topics and filters to check it on: the MQTT
topic and ACL tests compare the real thing with a brute force over these."""

from __future__ import annotations

from hypothesis import strategies as st

from protocols.mqtt.topics import is_topic_name


def reference(topic_filter: str, topic: str) -> bool:
    """Does `topic_filter` match `topic`? Recursively, level by level (MQTT section 4.7)."""

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


def all_topics(levels: list[str], most: int) -> list[str]:
    """Every topic name of 1..`most` levels drawn from `levels` ("" is no topic name)."""
    found: list[list[str]] = [[]]
    topics: list[str] = []
    for _ in range(most):
        found = [[*topic, level] for topic in found for level in levels]
        topics += ["/".join(topic) for topic in found]
    return [topic for topic in topics if is_topic_name(topic)]


LITERALS = ["a", "b", "", "$x", "$SYS"]
"""The levels generated filters name. A brute force adds a level none of them names and one
starting with `$` ("z", "$z": every way a topic level can meet a filter level), and goes one
level deeper than the longest filter, so that `#` and a missing level show."""

SHORT_FILTERS = st.builds(
    lambda levels, tail: "/".join(levels + tail),
    st.lists(st.sampled_from([*LITERALS, "+"]), min_size=0, max_size=3),
    st.sampled_from([[], ["#"]]),
).filter(bool)
"""Valid filters of up to three levels and a `#`."""
