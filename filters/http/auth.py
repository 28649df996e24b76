"""auth: let through only requests that carry a known bearer token or API key.

```yaml
- name: auth
  config:
    bearer_tokens: ${API_TOKENS}        # a list, or one comma-separated string
    api_keys: [k-123]
    api_key_header: x-api-key           # the default
    strip: true                         # the default: the upstream never sees the credential
    realm: mecha                        # the default
```

A bearer token comes in `Authorization: Bearer <token>`, an API key in `api_key_header`;
either one that matches lets the request go on. Every configured value is compared with
`hmac.compare_digest`, all of them every time, so the answer takes the same time
whichever value matched. Answers follow RFC 6750 (§3, §3.1):

- no credentials (or another Authorization scheme): 401 and
  `www-authenticate: Bearer realm="mecha"`;
- a token or key that matches nothing: 401 and
  `www-authenticate: Bearer realm="mecha", error="invalid_token"` (403 is for a valid
  token without enough rights, which this filter cannot know).

When API keys are configured, the 401 also carries
`www-authenticate: ApiKey realm="mecha", header="x-api-key"`, so a client learns which
header to use. gRPC callers get UNAUTHENTICATED. A route's `filters.auth` block replaces
the whole config for that route (other keys, say), and `auth: false` turns it off there.
CORS preflights carry no credentials: put `cors` before `auth`.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from filters.http.api import (
    CONTINUE,
    STOP,
    FilterStatus,
    HttpFactoryContext,
    StreamCallbacks,
    StreamFilter,
    StreamFilterFactory,
)
from filters.http.config_values import header_name, header_value, string_list
from filters.http.registry import HttpFilterSpec
from protocols.http.events import RequestHeaders
from protocols.http.headers import Headers
from proxy.config.context import ParseContext
from proxy.config.reader import Node
from proxy.stream_info import ResponseFlag

NAME = "auth"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 §2.1 b64token: what a bearer token may look like."""
_REALM = re.compile(r'[^"\\\x00-\x1f\x7f]*')

AUTHORIZATION = b"authorization"
WWW_AUTHENTICATE = b"www-authenticate"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    bearer_tokens: tuple[bytes, ...] = ()
    api_keys: tuple[bytes, ...] = ()
    api_key_header: bytes = b"x-api-key"
    strip: bool = True
    realm: str = "mecha"

    def challenges(self, error: str | None) -> tuple[bytes, ...]:
        """The www-authenticate values of a 401 (made once per config, not per request)."""
        values = []
        if self.bearer_tokens:
            suffix = f', error="{error}"' if error else ""
            values.append(f'Bearer realm="{self.realm}"{suffix}'.encode())
        if self.api_keys:
            header = self.api_key_header.decode()
            values.append(f'ApiKey realm="{self.realm}", header="{header}"'.encode())
        return tuple(values)


def parse_config(node: Node, context: ParseContext) -> AuthConfig:
    node.only("bearer_tokens", "api_keys", "api_key_header", "strip", "realm")
    bearer = tuple(_credentials(node, "bearer_tokens", _B64TOKEN))
    keys = tuple(_credentials(node, "api_keys", None))
    if not bearer and not keys:  # e.g. a ${VAR} that expanded to nothing: fail at load time
        node.problem("configure at least one of: bearer_tokens, api_keys")
    realm = node.text("realm", "mecha")
    if not _REALM.fullmatch(realm):
        node.problem("must not contain quotes, backslashes or control characters", "realm")
    api_key_header = header_name(node, "api_key_header", node.text("api_key_header", "x-api-key"))
    if api_key_header == AUTHORIZATION:
        node.problem("use bearer_tokens for the authorization header", "api_key_header")
    return AuthConfig(
        bearer_tokens=bearer,
        api_keys=keys,
        api_key_header=api_key_header,
        strip=node.flag("strip", True),
        realm=realm,
    )


def _credentials(node: Node, key: str, pattern: re.Pattern[str] | None) -> list[bytes]:
    values = []
    for text in string_list(node, key):
        if not text:
            node.problem("a credential must not be empty", key)
        elif pattern is not None and not pattern.fullmatch(text):
            node.problem("a bearer token is letters, digits and -._~+/ (then any =)", key)
        else:
            values.append(header_value(node, key, text))
    return values


class _Shared:
    """What every stream of one config needs, made once: the 401 header values."""

    __slots__ = ("config", "invalid", "missing")

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.missing = config.challenges(None)
        self.invalid = config.challenges("invalid_token")


def create_factory(config: AuthConfig, context: HttpFactoryContext) -> StreamFilterFactory:
    shared = _Shared(config)
    per_route: dict[int, _Shared] = {}

    def factory(callbacks: StreamCallbacks) -> StreamFilter:
        override: AuthConfig | None = callbacks.per_route_config(NAME)
        if override is None:
            return AuthFilter(shared, callbacks)
        found = per_route.get(id(override))  # the value keeps the config (and its id) alive
        if found is None:
            found = per_route[id(override)] = _Shared(override)
        return AuthFilter(found, callbacks)

    return factory


SPEC = HttpFilterSpec(parse_config, create_factory, parse_per_route=parse_config)


def matches(presented: bytes, accepted: tuple[bytes, ...]) -> bool:
    """Constant-time against each accepted value, and no early exit on a match."""
    found = False
    for value in accepted:
        found |= hmac.compare_digest(presented, value)
    return found and bool(presented)


class AuthFilter(StreamFilter):
    __slots__ = ("_callbacks", "_shared")

    def __init__(self, shared: _Shared, callbacks: StreamCallbacks) -> None:
        self._shared = shared
        self._callbacks = callbacks

    def decode_headers(self, request: RequestHeaders, end_stream: bool) -> FilterStatus:
        config = self._shared.config
        headers = request.headers
        presented = accepted = bearer = False
        if config.bearer_tokens:
            value = headers.get(AUTHORIZATION)
            if value is not None:
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = bearer = True
                    accepted = matches(token.strip(b" \t"), config.bearer_tokens)
        if not accepted and config.api_keys:
            key = headers.get(config.api_key_header)
            if key is not None:
                presented = True
                accepted = matches(key.strip(b" \t"), config.api_keys)
        if accepted:
            if config.strip:
                if bearer:
                    headers.remove(AUTHORIZATION)
                if config.api_keys:
                    headers.remove(config.api_key_header)
            return CONTINUE
        self._refuse(presented)
        return STOP

    def _refuse(self, presented: bool) -> None:
        shared = self._shared
        challenges = shared.invalid if presented else shared.missing
        body = b"invalid credentials\n" if presented else b"missing credentials\n"
        headers = Headers([(WWW_AUTHENTICATE, value) for value in challenges])
        details = "auth: invalid credentials" if presented else "auth: missing credentials"
        self._callbacks.send_local_reply(
            401, body, ResponseFlag.UNAUTHORIZED, headers=headers, details=details
        )
