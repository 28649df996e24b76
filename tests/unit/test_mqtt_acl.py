"""mqtt_proxy's topic ACLs: first matching rule decides; decisions are remembered, boundedly;
subscriptions are judged by the topics they can receive, checked against a brute force."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.network.mqtt_proxy import acl as acl_module
from filters.network.mqtt_proxy.acl import Acl
from filters.network.mqtt_proxy.config import AclRule
from tests.unit.mqtt_reference import SHORT_FILTERS, all_topics, reference

RULES = (
    AclRule("$SYS/#", "both", allow=False),
    AclRule("admin/#", "publish", allow=True, users=frozenset({"admin"})),
    AclRule("admin/#", "publish", allow=False),
)  # the rules of configs/mqtt-proxy.yaml


@pytest.mark.parametrize(
    ("action", "topic", "user", "allowed"),
    [
        ("publish", "sensors/t1", None, True),
        ("publish", "admin/reboot", "admin", True),
        ("publish", "admin/reboot", "bob", False),
        ("publish", "admin/reboot", None, False),
        ("subscribe", "admin/#", "bob", True),
        ("publish", "$SYS/x", "admin", False),
        # a filter starting with a wildcard never receives $SYS/... (MQTT-4.7.2-1)
        ("subscribe", "#", "bob", True),
        ("subscribe", "+/+", None, True),
        ("subscribe", "+/#", None, True),
        ("subscribe", "a/+", None, True),
        ("subscribe", "$SYS/#", None, False),
        ("subscribe", "$SYS/broker/+", None, False),
        ("subscribe", "$SYS", None, False),
        ("subscribe", "$share/g/#", None, True),
        ("subscribe", "$share/g/$SYS/#", None, False),  # shared: $SYS/# is what it gets
    ],
)
def test_decisions_are_the_same_when_remembered(
    action: str, topic: str, user: str | None, allowed: bool
) -> None:
    acl = Acl(RULES, default_allow=True)
    assert [acl.allows(action, topic, user) for _ in range(3)] == [allowed] * 3


SHARED = [
    ("$share/g/secret/#", False), ("$share/g/#", False), ("$share/g/public/x", True),
    ("$share/secret/x", True),
]  # fmt: skip


@pytest.mark.parametrize(("topic_filter", "allowed"), SHARED)
def test_shared_subscriptions_are_judged_by_what_they_receive(
    topic_filter: str, allowed: bool
) -> None:
    acl = Acl((AclRule("secret/#", "subscribe", allow=False),), default_allow=True)
    assert acl.allows("subscribe", topic_filter, None) is allowed


def test_a_shared_subscription_needs_both_readings_allowed() -> None:
    """A broker that does not share delivers what `$share/g/x` matches as it stands."""
    acl = Acl((AclRule("$share/#", "subscribe", allow=False),), default_allow=True)
    assert not acl.allows("subscribe", "$share/g/x", None)
    allow_only = Acl((AclRule("news/#", "subscribe", allow=True),), default_allow=False)
    assert allow_only.allows("subscribe", "news/+", None)
    assert not allow_only.allows("subscribe", "$share/g/news/+", None)


def test_remembered_decisions_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_module, "CACHE_SIZE", 5)
    acl = Acl(RULES, default_allow=True)
    for i in range(50):
        assert acl.allows("publish", f"admin/{i}", "bob") is False
        assert acl.allows("publish", f"sensors/{i}", "bob") is True
    assert len(acl._decisions) == 5


# -- against a brute force: each topic decided by the first rule that matches it ----------------

TOPICS = all_topics(["a", "b", "", "$x", "$SYS", "z", "$z"], 4)
RULE_LISTS = st.lists(st.tuples(SHORT_FILTERS, st.booleans()), min_size=1, max_size=4)


def topic_allowed(rules: list[tuple[str, bool]], default: bool, topic: str) -> bool:
    return next((allow for f, allow in rules if reference(f, topic)), default)


def make_acl(rules: list[tuple[str, bool]], default: bool) -> Acl:
    return Acl(tuple(AclRule(f, "both", allow=allow) for f, allow in rules), default)


@settings(max_examples=200, deadline=None)
@given(RULE_LISTS, st.booleans(), SHORT_FILTERS)
def test_an_allowed_subscription_receives_only_allowed_topics(
    rules: list[tuple[str, bool]], default: bool, topic_filter: str
) -> None:
    acl = make_acl(rules, default)
    received = [topic for topic in TOPICS if reference(topic_filter, topic)]
    if acl.allows("subscribe", topic_filter, None):
        assert all(topic_allowed(rules, default, topic) for topic in received)
    for topic in received:  # a topic name is decided exactly
        assert acl.allows("publish", topic, None) is topic_allowed(rules, default, topic)


@settings(max_examples=200, deadline=None)
@given(SHORT_FILTERS, st.booleans(), SHORT_FILTERS)
def test_one_rule_decides_subscriptions_exactly(rule: str, allow: bool, topic_filter: str) -> None:
    """With one rule and the opposite default there is no approximation: a subscription is
    allowed exactly when every topic it can receive is."""
    acl = make_acl([(rule, allow)], not allow)
    received = [topic for topic in TOPICS if reference(topic_filter, topic)]
    exact = all(topic_allowed([(rule, allow)], not allow, topic) for topic in received)
    assert acl.allows("subscribe", topic_filter, None) is exact
