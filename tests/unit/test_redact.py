"""/config_dump's redaction: secrets by the key that names them, in URLs and connection
strings, and wherever a value resolved from a secret store turns up."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.redact import REDACTED, redact, redact_text, sensitive

R = REDACTED


@pytest.mark.parametrize(
    "key",
    ["password", "api_token", "app_token", "redisPassword", "saslPassword", "clientSecret",
     "accessKey", "secretKey", "masterKey", "apiKey", "connectionString", "bearer_tokens",
     "api_keys", "privateKey", "authorization", "Proxy-Authorization", "credentials"],
)  # fmt: skip
def test_keys_that_name_secrets(key: str) -> None:
    assert sensitive(key)


@pytest.mark.parametrize(
    "key",
    ["max_tokens", "tokens_per_fill", "key_file", "cert_file", "keyPrefix", "secret_store",
     "secretKeyRef", "username", "redisHost", "api_key_header", "name", "key", 3, None],
)  # fmt: skip
def test_keys_that_do_not(key: Any) -> None:
    assert not sensitive(key)


DOCUMENT: dict[str, Any] = {
    "admin": {"address": "127.0.0.1:15000"},
    "clusters": [{"name": "redis", "redis_cluster": {"username": "u", "password": 12345}}],
    "listeners": [{"name": "web", "filters": [{"name": "http", "config": {"http_filters": [
        {"name": "auth", "config": {"bearer_tokens": ["t0ken-a", "t0ken-b"]}},
        {"name": "local_ratelimit", "config": {"max_tokens": 10, "tokens_per_fill": 2}},
        {"name": "header_mutation", "config": {"request_headers_to_add": [
            {"key": "authorization", "value": "Bearer abc"}, {"key": "x-env", "value": "prod"}]}},
    ]}}], "tls": {"cert_file": "/c.pem", "key_file": "/k.pem"}}],
    "runtime": {
        "api_token": "expanded-from-env",
        "components": [{"name": "st", "type": "state.redis", "metadata": {
            "redisHost": "redis://admin:hunter2@db:6379/0",
            "redisPassword": {"secretKeyRef": {"name": "REDIS", "key": "password"}},
            "keyPrefix": "name",
        }}],
    },
    "dapr_items": [{"name": "accessKey", "value": "AKIA123"}, {"name": "region", "value": "eu"},
                   {"name": "secretKey", "secretKeyRef": {"name": "aws", "key": "secret"}}],
}  # fmt: skip
EXPECTED: dict[str, Any] = {
    "admin": {"address": "127.0.0.1:15000"},
    "clusters": [{"name": "redis", "redis_cluster": {"username": "u", "password": R}}],
    "listeners": [{"name": "web", "filters": [{"name": "http", "config": {"http_filters": [
        {"name": "auth", "config": {"bearer_tokens": [R, R]}},
        {"name": "local_ratelimit", "config": {"max_tokens": 10, "tokens_per_fill": 2}},
        {"name": "header_mutation", "config": {"request_headers_to_add": [
            {"key": "authorization", "value": R}, {"key": "x-env", "value": "prod"}]}},
    ]}}], "tls": {"cert_file": "/c.pem", "key_file": "/k.pem"}}],
    "runtime": {
        "api_token": R,
        "components": [{"name": "st", "type": "state.redis", "metadata": {
            "redisHost": f"redis://admin:{R}@db:6379/0",
            "redisPassword": {"secretKeyRef": {"name": "REDIS", "key": "password"}},
            "keyPrefix": "name",
        }}],
    },
    "dapr_items": [{"name": "accessKey", "value": R}, {"name": "region", "value": "eu"},
                   {"name": "secretKey", "secretKeyRef": {"name": "aws", "key": "secret"}}],
}  # fmt: skip


def test_a_config_document_is_redacted_and_left_as_it_was() -> None:
    before = repr(DOCUMENT)
    assert redact(DOCUMENT) == EXPECTED
    assert repr(DOCUMENT) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@host:6379", f"redis://:{R}@host:6379"),
        ("nats://user:p%40ss@nats:4222", f"nats://user:{R}@nats:4222"),
        ("https://ghp_token@github.com/org/repo", f"https://{R}@github.com/org/repo"),
        ("tcp://broker:1883", "tcp://broker:1883"),
        ("mailto-like user@example.com", "mailto-like user@example.com"),
        ("Server=db;User Id=app;Password=p4ss;", f"Server=db;User Id=app;Password={R};"),
        ("https://api/x?a=1&token=abc&b=2", f"https://api/x?a=1&token={R}&b=2"),
        ('event.token == "x" && event.type=="y"', 'event.token == "x" && event.type=="y"'),
    ],
)
def test_secrets_inside_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_values_resolved_from_secret_stores_are_redacted_anywhere() -> None:
    document = {"metadata": {"url": "amqp://guest@mq", "note": "uses s3cr3t-value inside"},
                "flag": "on", "port": 6379}  # fmt: skip
    redacted = redact(document, secrets=["s3cr3t-value", "on"])  # too short to look for
    assert redacted == {"metadata": {"url": f"amqp://{R}@mq", "note": f"uses {R} inside"},
                        "flag": "on", "port": 6379}  # fmt: skip


def test_empty_and_boolean_values_keep_their_shape() -> None:
    assert redact({"password": "", "api_token": None, "allow_credentials": True}) == {
        "password": "", "api_token": None, "allow_credentials": True,
    }  # fmt: skip
