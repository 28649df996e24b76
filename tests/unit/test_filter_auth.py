"""auth: missing, wrong and right credentials (RFC 6750 answers), stripping, per-route override."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from filters.http import auth, registry
from filters.http.api import StreamFilterFactory
from filters.http.auth import AuthConfig, parse_config
from proxy.stream_info import ResponseFlag
from tests.unit.http_fakes import (
    CONFIG_PATH,
    FakeFactoryContext,
    FakeStream,
    make_request,
    parse,
    parse_ok,
)

CONFIG = {"bearer_tokens": ["t0k3n-A", "t0k3n-B"], "api_keys": ["key-1"]}
BEARER_CHALLENGE = b'Bearer realm="mecha"'
INVALID_CHALLENGE = b'Bearer realm="mecha", error="invalid_token"'
API_KEY_CHALLENGE = b'ApiKey realm="mecha", header="x-api-key"'


def factory(config: dict[str, Any] = CONFIG) -> StreamFilterFactory:
    return auth.create_factory(parse_ok(parse_config, config), FakeFactoryContext())


def run(
    headers: list[tuple[bytes, bytes]],
    make: StreamFilterFactory | None = None,
    per_route: dict[str, Any] | None = None,
) -> FakeStream:
    stream = FakeStream(request=make_request(headers=headers), per_route=per_route or {})
    stream.start(make or factory())
    return stream


def bearer(token: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + token)]


# -- refusals -------------------------------------------------------------------------------


def test_no_credentials_is_401_with_a_challenge_without_error() -> None:
    stream = run([(b"x-other", b"1")])
    assert not stream.forwarded
    reply = stream.reply
    assert (reply.status, reply.body, reply.flag) == (
        401,
        b"missing credentials\n",
        ResponseFlag.UNAUTHORIZED,
    )
    assert reply.details == "auth: missing credentials"
    assert reply.headers.get_all(b"www-authenticate") == [BEARER_CHALLENGE, API_KEY_CHALLENGE]
    assert stream.info.failure_reason == "auth: missing credentials"


def test_a_wrong_token_is_401_invalid_token() -> None:
    stream = run(bearer(b"t0k3n-C"))
    reply = stream.reply
    assert (reply.status, reply.body) == (401, b"invalid credentials\n")
    assert reply.headers.get_all(b"www-authenticate") == [INVALID_CHALLENGE, API_KEY_CHALLENGE]
    assert reply.details == "auth: invalid credentials"


@pytest.mark.parametrize(
    "headers",
    [
        bearer(b"t0k3n-A2"),  # a prefix of a token is not the token
        bearer(b"t0k3n-"),
        bearer(b""),
        [(b"authorization", b"Bearer")],
        [(b"x-api-key", b"key-2")],
        [(b"x-api-key", b"")],
        [(b"authorization", b"Bearer nope"), (b"x-api-key", b"nope")],
    ],
)
def test_wrong_or_empty_credentials_are_refused_as_invalid(
    headers: list[tuple[bytes, bytes]],
) -> None:
    reply = run(headers).reply
    assert reply.status == 401
    assert INVALID_CHALLENGE in reply.headers.get_all(b"www-authenticate")


def test_another_authorization_scheme_counts_as_missing() -> None:
    reply = run([(b"authorization", b"Basic dXNlcjpwYXNz")]).reply
    assert reply.body == b"missing credentials\n"


def test_without_api_keys_there_is_no_api_key_challenge() -> None:
    reply = run([], factory({"bearer_tokens": ["t0k3n-A"]})).reply
    assert reply.headers.get_all(b"www-authenticate") == [BEARER_CHALLENGE]


def test_with_only_api_keys_the_authorization_header_is_not_a_credential() -> None:
    make = factory({"api_keys": ["key-1"], "api_key_header": "X-Key", "realm": "shop"})
    reply = run(bearer(b"key-1"), make).reply
    assert reply.body == b"missing credentials\n"
    assert reply.headers.get_all(b"www-authenticate") == [b'ApiKey realm="shop", header="x-key"']
    allowed = run([(b"authorization", b"Basic abc"), (b"x-key", b"key-1")], make)
    assert allowed.forwarded
    assert allowed.request.headers.get(b"authorization") == b"Basic abc"  # not ours: kept


# -- acceptance -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        bearer(b"t0k3n-A"),
        bearer(b"t0k3n-B"),
        [(b"authorization", b"bearer   t0k3n-B ")],
        [(b"x-api-key", b"key-1")],
        [(b"authorization", b"Bearer wrong"), (b"x-api-key", b"key-1")],
    ],
)
def test_a_known_token_or_key_goes_on_without_the_credentials(
    headers: list[tuple[bytes, bytes]],
) -> None:
    stream = run([*headers, (b"x-other", b"1")])
    assert stream.forwarded
    assert stream.local_replies == []
    assert stream.request.headers.items == [(b"host", b"example.com"), (b"x-other", b"1")]


def test_strip_false_forwards_the_credentials() -> None:
    make = factory({**CONFIG, "strip": False})
    stream = run([*bearer(b"t0k3n-A"), (b"x-api-key", b"key-1")], make)
    assert stream.forwarded
    assert stream.request.headers.get(b"authorization") == b"Bearer t0k3n-A"
    assert stream.request.headers.get(b"x-api-key") == b"key-1"


def test_every_configured_token_is_compared_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare)
    make = factory({"bearer_tokens": ["first", "second", "third"]})
    assert run(bearer(b"first"), make).forwarded
    assert compared == [(b"first", b"first"), (b"first", b"second"), (b"first", b"third")]


# -- per route ------------------------------------------------------------------------------


def test_a_route_config_replaces_the_filter_config() -> None:
    route_config = parse_ok(parse_config, {"api_keys": ["admin-key"]})
    on_route = {"auth": route_config}
    assert run([(b"x-api-key", b"admin-key")], per_route=on_route).forwarded
    assert run([(b"x-api-key", b"key-1")], per_route=on_route).reply.status == 401
    assert run(bearer(b"t0k3n-A"), per_route=on_route).reply.status == 401
    assert run([(b"x-api-key", b"admin-key")]).reply.status == 401


# -- config ---------------------------------------------------------------------------------


def test_parse_accepts_comma_separated_tokens_from_the_environment() -> None:
    config = parse_ok(parse_config, {"bearer_tokens": "abc, def==", "api_key_header": "X-Key"})
    assert config == AuthConfig(bearer_tokens=(b"abc", b"def=="), api_key_header=b"x-key")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, ": configure at least one of: bearer_tokens, api_keys"),
        ({"bearer_tokens": ""}, ": configure at least one of: bearer_tokens, api_keys"),
        ({"bearer_tokens": []}, ": configure at least one of: bearer_tokens, api_keys"),
        ({"bearer_tokens": ["has space"]}, ".bearer_tokens: a bearer token is letters"),
        ({"bearer_tokens": [""]}, ".bearer_tokens: a credential must not be empty"),
        ({"bearer_tokens": [12345]}, ".bearer_tokens[0]: expected a string, got int"),
        ({"api_keys": ["k\r\nx: y"]}, ".api_keys: a header value must not contain control"),
        ({"api_keys": ["k"], "api_key_header": "Authorization"},
         ".api_key_header: use bearer_tokens for the authorization header"),
        ({"api_keys": ["k"], "api_key_header": "x key"},
         ".api_key_header: 'x key' is not a valid header name"),
        ({"api_keys": ["k"], "realm": 'a"b'}, ".realm: must not contain quotes"),
        ({"api_keys": ["k"], "strip": "no"}, ".strip: expected true or false"),
        ({"api_keys": ["k"], "tokens": ["x"]}, ".tokens: unknown key"),
    ],
)  # fmt: skip
def test_parse_problems_name_the_yaml_path(value: dict[str, Any], expected: str) -> None:
    _, problems = parse(parse_config, value)
    assert any(p.startswith(CONFIG_PATH + expected) for p in problems), problems


def test_registered_with_a_per_route_parser() -> None:
    spec = registry.lookup("auth")
    assert spec is auth.SPEC
    assert spec.parse_per_route is parse_config
