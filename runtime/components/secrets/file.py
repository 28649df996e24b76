"""`secretstores.local.file`: secrets from a JSON file, read once at init (Dapr's; for development).

Metadata:

| key | meaning |
| --- | --- |
| `secretsFile` | path of the JSON document, an object (required) |
| `nestedSeparator` | joins the keys of nested objects and array indexes (default `:`) |
| `multiValued` | `false` (default) or `true`, see below |

`multiValued: false`: every leaf of the document is a secret of its own, named by its path:
`{"db": {"user": "u"}}` holds the secret `db:user` = `{"db:user": "u"}`.
`multiValued: true`: every top-level key is a secret; a scalar is `{key: value}`, an object (or
array) gives its leaves by their path inside it: `db` = `{"user": "u"}`.

Values: strings as they are, numbers and booleans as JSON writes them, null as "". A document
where two leaves get one name (`{"a:b": 1, "a": {"b": 2}}`) is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from protocols import strict_json
from runtime.components.api import Metadata
from runtime.components.errors import BadMetadata, NotFound
from runtime.components.metadata import flag

DEFAULT_SEPARATOR = ":"


class FileSecretStore:
    runs_inline = True
    answers_at_once = True

    def __init__(self) -> None:
        self._secrets: dict[str, dict[str, str]] = {}

    async def init(self, metadata: Metadata) -> None:
        path = metadata.get("secretsFile", "").strip()
        if not path:
            raise BadMetadata("secretsFile", "required (the path of a JSON file)")
        separator = metadata.get("nestedSeparator") or DEFAULT_SEPARATOR
        multi_valued = flag(metadata, "multiValued")
        document = await asyncio.to_thread(_load, Path(path))
        try:
            self._secrets = _secrets(document, separator, multi_valued)
        except ValueError as error:
            raise BadMetadata("secretsFile", f"{path}: {error}") from None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._secrets = {}

    async def get(self, key: str, metadata: Metadata) -> dict[str, str]:
        if key not in self._secrets:
            raise NotFound(f"secret {key!r}")
        return dict(self._secrets[key])

    async def bulk_get(self, metadata: Metadata) -> dict[str, dict[str, str]]:
        return {key: dict(values) for key, values in self._secrets.items()}


def _load(path: Path) -> dict[str, Any]:
    try:
        document = strict_json.loads(path.read_bytes())
    except OSError as error:
        raise BadMetadata("secretsFile", f"cannot read {path}: {error.strerror or error}") from None
    except strict_json.JsonError as error:
        raise BadMetadata("secretsFile", f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise BadMetadata("secretsFile", f"{path}: expected a JSON object at the top")
    return document


def _secrets(
    document: dict[str, Any], separator: str, multi_valued: bool
) -> dict[str, dict[str, str]]:
    if not multi_valued:
        return {name: {name: value} for name, value in _leaves(document, separator).items()}
    secrets = {}
    for key, value in document.items():
        if isinstance(value, dict | list):
            secrets[key] = _leaves(value, separator)
        else:
            secrets[key] = {key: _text(value)}
    return secrets


def _leaves(value: dict[str, Any] | list[Any], separator: str) -> dict[str, str]:
    """Every scalar below `value`, by its path of keys and indexes joined with `separator`."""
    leaves: dict[str, str] = {}
    _visit(value, (), separator, leaves)
    return leaves


def _visit(value: Any, path: tuple[str, ...], separator: str, leaves: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _visit(item, (*path, key), separator, leaves)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _visit(item, (*path, str(index)), separator, leaves)
    else:
        name = separator.join(path)
        if name in leaves:
            raise ValueError(f"two values are named {name!r}")
        leaves[name] = _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return strict_json.dumps(value).decode()
