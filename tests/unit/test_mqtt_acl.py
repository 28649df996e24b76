"""mqtt_proxy's topic ACLs: first matching rule decides; decisions are remembered, boundedly."""

from __future__ import annotations

import pytest

from filters.network.mqtt_proxy import acl as acl_module
from filters.network.mqtt_proxy.acl import Acl
from filters.network.mqtt_proxy.config import AclRule

RULES = (
    AclRule("$SYS/#", "both", allow=False),
    AclRule("admin/#", "publish", allow=True, users=frozenset({"admin"})),
    AclRule("admin/#", "publish", allow=False),
)


@pytest.mark.parametrize(
    ("action", "topic", "user", "allowed"),
    [
        ("publish", "sensors/t1", None, True),
        ("publish", "admin/reboot", "admin", True),
        ("publish", "admin/reboot", "bob", False),
        ("publish", "admin/reboot", None, False),
        ("subscribe", "admin/#", "bob", True),
        ("subscribe", "#", "bob", False),  # overlaps the $SYS/# deny rule
        ("publish", "$SYS/x", "admin", False),
    ],
)
def test_decisions_are_the_same_when_remembered(
    action: str, topic: str, user: str | None, allowed: bool
) -> None:
    acl = Acl(RULES, default_allow=True)
    assert [acl.allows(action, topic, user) for _ in range(3)] == [allowed] * 3


def test_remembered_decisions_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_module, "CACHE_SIZE", 5)
    acl = Acl(RULES, default_allow=True)
    for i in range(50):
        assert acl.allows("publish", f"admin/{i}", "bob") is False
        assert acl.allows("publish", f"sensors/{i}", "bob") is True
    assert len(acl._decisions) == 5
