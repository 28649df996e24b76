"""Topic ACLs: may this user publish to a topic, or subscribe with a filter?

Rules are tried in order and the first that applies decides. An allow rule must cover
everything the subscription could receive; a deny rule applies as soon as it overlaps it
(so `deny secret/#` refuses a subscription to `#`). Both follow the spec's matching rules
(protocols/mqtt/topics.py), `$` topics included: `deny $SYS/#` does not refuse `#` or `+/+`,
which never receive `$SYS/...`.

A shared subscription `$share/{name}/{filter}` receives what `filter` matches; a broker
that does not share (or a 3.1.1 client's broker that reads it literally) delivers what the
whole string matches. Both readings must be allowed.
"""

from __future__ import annotations

from filters.network.mqtt_proxy.config import AclRule
from protocols.mqtt import covers, overlap, split_shared

CACHE_SIZE = 10_000
"""Decisions remembered (clients choose topics and user names: the cache stays bounded)."""


class Acl:
    def __init__(self, rules: tuple[AclRule, ...], default_allow: bool) -> None:
        self._rules = rules
        self._default = default_allow
        self._decisions: dict[tuple[str, str, str | None], bool] = {}

    def allows(self, action: str, topic_or_filter: str, username: str | None) -> bool:
        """Whether the rules let `username` do `action` with a topic (or a filter)."""
        key = (action, topic_or_filter, username)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(action, topic_or_filter, username)
            if action == "subscribe" and (shared := split_shared(topic_or_filter)):
                decision = decision and self._decide(action, shared[1], username)
            if len(self._decisions) < CACHE_SIZE:
                self._decisions[key] = decision
        return decision

    def _decide(self, action: str, topic_or_filter: str, username: str | None) -> bool:
        for rule in self._rules:
            if rule.action not in (action, "both"):
                continue
            if rule.users is not None and username not in rule.users:
                continue
            if rule.allow and covers(rule.topic, topic_or_filter):
                return True
            if not rule.allow and overlap(rule.topic, topic_or_filter):
                return False
        return self._default
