"""Secrets out of what the admin shows: /config_dump redacts them, as Envoy's does.

Envoy redacts the fields its API marks sensitive; mecha's config is free YAML (its own keys,
filters' `config:` blocks, Dapr component metadata), so a value is redacted by what names it:

- a key that names a secret (`password`, `api_token`, `redisPassword`, `clientSecret`,
  `bearer_tokens`, `connectionString`, ...), and Dapr's `{name: <such a key>, value: ...}`
  metadata items and `{name: authorization, value: ...}` headers;
- the userinfo of a URL (`redis://user:[redacted]@host`), and `password=...`-like pairs in a
  query string or a connection string;
- anywhere, a value the runtime resolved from a secret store (`secretKeyRef`).

A `secretKeyRef` itself names a secret without holding it, and a `*_file` key holds a path:
both are shown as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
_SENSITIVE_ENDINGS = (
    "password", "passwd", "passphrase", "token", "secret", "credential", "credentials",
    "apikey", "accesskey", "secretkey", "privatekey", "masterkey", "accountkey", "sharedkey",
    "signingkey", "connectionstring", "authorization", "cookie",
)  # fmt: skip
_SENSITIVE_NAMES = frozenset({"bearertokens", "apikeys", "pwd", "sas", "sastoken"})
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)"
                       r"(?::(?P<password>[^/@\s]*))?@")  # fmt: skip
_PAIR = re.compile(r"(?:^|(?<=[?&;,\s]))(?P<key>[A-Za-z][\w-]*)=(?P<value>[^;&,\s]+)")
"""`key=value` starting the text or after `?`, `&`, `;`, `,` or a space: a query string, a
connection string (`Server=db;Password=...`)."""
_MIN_SECRET = 4
"""Shorter resolved values ("1", "on") would redact half the document by accident."""


def sensitive(key: object) -> bool:
    """True when a key names a secret: a password, a token, a key of an API, ..."""
    if not isinstance(key, str) or key.lower().endswith("_file"):
        return False
    name = "".join(ch for ch in key.lower() if ch.isalnum())
    return name in _SENSITIVE_NAMES or name.endswith(_SENSITIVE_ENDINGS)


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of `value` (a parsed YAML/JSON document) without the secrets it holds."""
    known = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
    return _redact(value, known)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return _redact_mapping(value, secrets)
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_text(value, secrets)
    return value


def _redact_mapping(mapping: dict[Any, Any], secrets: list[str]) -> dict[Any, Any]:
    named = mapping.get("name", mapping.get("key"))
    hides_value = sensitive(named) and "value" in mapping  # Dapr metadata items, headers
    result = {}
    for key, item in mapping.items():
        if (sensitive(key) or (hides_value and key == "value")) and not _reference(item):
            result[key] = _hidden(item)
        else:
            result[key] = _redact(item, secrets)
    return result


def _reference(value: Any) -> bool:
    """A `secretKeyRef`: it names the secret, it does not hold it."""
    return isinstance(value, dict) and "secretKeyRef" in value


def _hidden(value: Any) -> Any:
    if isinstance(value, list):
        return [_hidden(item) for item in value]
    if isinstance(value, dict):
        return {key: _hidden(item) for key, item in value.items()}
    if value is None or value == "" or isinstance(value, bool):
        return value  # nothing to hide, and the shape stays readable
    return REDACTED


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL userinfo, secret `key=value` pairs and the `secrets` it contains."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    return text


def _userinfo(match: re.Match[str]) -> str:
    scheme, user = match.group("scheme"), match.group("user")
    if match.group("password") is None:  # `https://TOKEN@host`: the user is the credential
        return f"{scheme}{REDACTED}@" if user else match.group(0)
    return f"{scheme}{user}:{REDACTED}@"


def _pair(match: re.Match[str]) -> str:
    key = match.group("key")
    return f"{key}={REDACTED}" if sensitive(key) else match.group(0)
