"""`secretstores.local.env`: every environment variable is a secret `{name: value}` (Dapr's).

Metadata `prefix` (optional) limits the store to the variables whose names start with it
(case-sensitive), and is removed from the secrets' names: with `prefix: MYAPP_`, the secret
`DB` is the variable `MYAPP_DB`. As in Dapr, variables that belong to the runtime itself are
never secrets: `DAPR_*`, `MECHA_*` and `APP_API_TOKEN` (compared case-insensitively).

The environment is read at every call, so a variable set after init is found. A variable that
is not set (or not allowed) raises NotFound; Dapr answers an empty value instead.
"""

from __future__ import annotations

import os

from runtime.components.api import Metadata
from runtime.components.errors import NotFound

FORBIDDEN_PREFIXES = ("DAPR_", "MECHA_")
FORBIDDEN_NAMES = frozenset({"APP_API_TOKEN"})


class EnvSecretStore:
    runs_inline = True
    answers_at_once = True

    def __init__(self) -> None:
        self._prefix = ""

    async def init(self, metadata: Metadata) -> None:
        self._prefix = metadata.get("prefix", "")

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str, metadata: Metadata) -> dict[str, str]:
        name = self._prefix + key
        value = os.environ.get(name) if key and _allowed(name) else None
        if value is None:
            raise NotFound(f"secret {key!r}")
        return {key: value}

    async def bulk_get(self, metadata: Metadata) -> dict[str, dict[str, str]]:
        secrets = {}
        for name, value in os.environ.items():
            if len(name) > len(self._prefix) and name.startswith(self._prefix) and _allowed(name):
                key = name[len(self._prefix) :]
                secrets[key] = {key: value}
        return secrets


def _allowed(name: str) -> bool:
    upper = name.upper()
    return upper not in FORBIDDEN_NAMES and not upper.startswith(FORBIDDEN_PREFIXES)
