"""Topic ACLs: may this user publish to a topic, or subscribe with a filter?

Rules are tried in order and the first that applies decides. An allow rule must cover
everything the subscription could receive; a deny rule applies as soon as it overlaps it
(so `deny secret/#` refuses a subscription to `#`).
"""

from __future__ import annotations

from filters.network.mqtt_proxy.config import AclRule


def _covers(rule: list[str], wanted: list[str]) -> bool:
    """Every topic `wanted` matches is matched by `rule`."""
    for index, level in enumerate(rule):
        if level == "#":
            return True
        if index >= len(wanted):
            return False
        other = wanted[index]
        if other == "#" or (other == "+" and level != "+") or (level not in ("+", other)):
            return False
    return len(rule) == len(wanted)


def _overlaps(rule: list[str], wanted: list[str]) -> bool:
    """Some topic matches both."""
    for index, level in enumerate(rule):
        if level == "#":
            return True
        if index >= len(wanted):
            return False
        other = wanted[index]
        if other == "#":
            return True
        if level != "+" and other != "+" and level != other:
            return False
    return len(rule) == len(wanted) or (len(wanted) == len(rule) + 1 and wanted[-1] == "#")


CACHE_SIZE = 10_000
"""Decisions remembered (clients choose topics and user names: the cache stays bounded)."""


class Acl:
    def __init__(self, rules: tuple[AclRule, ...], default_allow: bool) -> None:
        self._rules = [(rule, rule.topic.split("/")) for rule in rules]
        self._default = default_allow
        self._decisions: dict[tuple[str, str, str | None], bool] = {}

    def allows(self, action: str, topic_or_filter: str, username: str | None) -> bool:
        """Whether the rules let `username` do `action` with a topic (or a filter)."""
        key = (action, topic_or_filter, username)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(action, topic_or_filter, username)
            if len(self._decisions) < CACHE_SIZE:
                self._decisions[key] = decision
        return decision

    def _decide(self, action: str, topic_or_filter: str, username: str | None) -> bool:
        wanted = topic_or_filter.split("/")
        for rule, levels in self._rules:
            if rule.action not in (action, "both"):
                continue
            if rule.users is not None and username not in rule.users:
                continue
            if rule.allow and _covers(levels, wanted):
                return True
            if not rule.allow and _overlaps(levels, wanted):
                return False
        return self._default
