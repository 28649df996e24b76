"""Reading a config file: strict YAML, then ${VAR} expansion on parsed scalars."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config.loader import expand_env, load_document, parse_yaml
from proxy.config.reader import ConfigError, Problem

ENV = {
    "PORT": "8080",
    "HOST": "10.0.0.1",
    "EMPTY": "",
    "RATIO": "2.5",
    "NEG": "-3",
    "ON": "true",
    "OFF_UPPER": "FALSE",
    "OFF": "off",
    "YES": "yes",
    "NAME": "redis",
    "DOLLAR": "$HOME",
}


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("${NAME}", "redis"),
        ("${HOST}:${PORT}", "10.0.0.1:8080"),
        ("${MISSING:-fallback}", "fallback"),
        ("${MISSING:-127.0.0.1:6379}", "127.0.0.1:6379"),
        ("${NAME:-fallback}", "redis"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("$$", "$"),
        ("$${NAME}", "${NAME}"),
        ("cost: $$5 for ${NAME}", "cost: $5 for redis"),
        ("$NAME", "$NAME"),
        ("${DOLLAR}", "$HOME"),
        ("no references", "no references"),
        # Whole-scalar references are typed.
        ("${PORT}", 8080),
        ("${MISSING:-80}", 80),
        ("${NEG}", -3),
        ("${RATIO}", 2.5),
        ("${ON}", True),
        ("${OFF_UPPER}", False),
        # YAML 1.1 words stay strings.
        ("${OFF}", "off"),
        ("${YES}", "yes"),
        # Only a scalar that is exactly one reference is typed.
        ("${PORT}${PORT}", "80808080"),
        ("port ${PORT}", "port 8080"),
        ("${PORT} ", "8080 "),
    ],
)
def test_expand_env_scalars(value: str, expanded: object) -> None:
    result = expand_env({"key": value}, ENV)["key"]
    assert result == expanded
    assert type(result) is type(expanded)


def test_expand_env_leaves_non_strings_and_keys_alone() -> None:
    document = {"${NAME}": [1, 2.5, True, None, {"nested": "${PORT}"}]}
    assert expand_env(document, ENV) == {"${NAME}": [1, 2.5, True, None, {"nested": 8080}]}


def test_expand_env_does_not_modify_its_input() -> None:
    document = {"listeners": [{"address": "${HOST}:${PORT}"}]}
    expand_env(document, ENV)
    assert document == {"listeners": [{"address": "${HOST}:${PORT}"}]}


def test_expand_env_value_cannot_change_document_shape() -> None:
    env = {"EVIL": "x\nlisteners: []"}
    assert expand_env({"name": "${EVIL}"}, env) == {"name": "x\nlisteners: []"}


def test_expand_env_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MECHA_TEST_PORT", "1234")
    assert expand_env({"port": "${MECHA_TEST_PORT}"}) == {"port": 1234}


def test_unset_variable_is_reported_with_its_yaml_path() -> None:
    document = {"listeners": [{"name": "tcp", "address": "${LISTEN_ADDRESS}"}]}
    with pytest.raises(ConfigError) as caught:
        expand_env(document, ENV)
    assert caught.value.problems == [
        Problem("listeners[0].address", "environment variable LISTEN_ADDRESS is not set")
    ]
    assert str(caught.value) == (
        "listeners[0].address: environment variable LISTEN_ADDRESS is not set"
    )


def test_every_unset_variable_is_reported_at_once() -> None:
    document = {
        "admin": {"address": "${A}"},
        "clusters": [{"endpoints": ["${HOST}:1", "${B}:${C}"]}],
    }
    with pytest.raises(ConfigError) as caught:
        expand_env(document, ENV)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("admin.address", "environment variable A is not set"),
        ("clusters[0].endpoints[1]", "environment variable B is not set"),
        ("clusters[0].endpoints[1]", "environment variable C is not set"),
    ]


@pytest.mark.parametrize(
    ("text", "document"),
    [
        ("a: 1\nb: [x, y]\n", {"a": 1, "b": ["x", "y"]}),
        ("", None),
        ("port: 80\nflag: off\n", {"port": 80, "flag": False}),
        # A merge key's values may be overridden by keys written next to it.
        (
            "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n",
            {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}},
        ),
    ],
)
def test_parse_yaml_valid(text: str, document: object) -> None:
    assert parse_yaml(text) == document


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a' (line 2)"),
        ("outer:\n  name: x\n  port: 1\n  name: y\n", "duplicate key 'name' (line 4)"),
        ("- {k: 1, k: 2}\n", "duplicate key 'k'"),
        ("b: &b {x: 1}\no: {<<: *b, y: 1, y: 2}\n", "duplicate key 'y'"),
        ("? [a, b]\n: 1\n", "unhashable key"),
        ("a: [1, 2\n", "invalid YAML"),
        ("a: b: c\n", "invalid YAML"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("---\na: 1\n---\nb: 2\n", "invalid YAML"),
    ],
)
def test_parse_yaml_invalid_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "mecha.yaml")
    [problem] = caught.value.problems
    assert problem.path == ""
    assert problem.message.startswith("mecha.yaml: invalid YAML: ")
    assert message in problem.message


def test_load_document_reads_and_expands(tmp_path: Path) -> None:
    file = tmp_path / "mecha.yaml"
    file.write_text("admin:\n  address: ${ADMIN:-127.0.0.1:15000}\nport: ${PORT}\n")
    assert load_document(file, ENV) == {"admin": {"address": "127.0.0.1:15000"}, "port": 8080}


def test_load_document_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_document(missing, ENV)
    [problem] = caught.value.problems
    assert problem.message.startswith(f"cannot read {missing}: ")
    assert "No such file" in problem.message


def test_load_document_reports_yaml_errors_with_the_file_name(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text("a: 1\na: 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{file}: invalid YAML: duplicate key 'a'")):
        load_document(file, ENV)


def test_quoted_reference_stays_a_string() -> None:
    document = parse_yaml('token: "${TOKEN}"\nport: ${TOKEN}\n')
    assert expand_env(document, {"TOKEN": "0123"}) == {"token": "0123", "port": 123}
