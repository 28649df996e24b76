"""Secret stores: get, bulk get, not found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.components.api import SecretStore
from runtime.components.errors import BadMetadata, NotFound
from runtime.components.secrets.env import EnvSecretStore
from runtime.components.secrets.file import FileSecretStore
from tests.conformance.conftest import SECRETS

BLOCK = "secretstores"


async def test_get_returns_the_secret(backend: SecretStore) -> None:
    for name, value in SECRETS.items():
        assert await backend.get(name, {}) == {name: value}


async def test_an_unknown_secret_is_not_found(backend: SecretStore) -> None:
    with pytest.raises(NotFound):
        await backend.get("NO_SUCH_SECRET", {})
    with pytest.raises(NotFound):
        await backend.get("", {})


async def test_bulk_get_returns_every_secret(backend: SecretStore) -> None:
    secrets = await backend.bulk_get({})
    for name, value in SECRETS.items():
        assert secrets[name] == {name: value}


async def test_results_are_copies(backend: SecretStore) -> None:
    name = next(iter(SECRETS))
    (await backend.get(name, {}))[name] = "tampered"
    (await backend.bulk_get({}))[name][name] = "tampered"
    assert await backend.get(name, {}) == {name: SECRETS[name]}


# -- local.env -------------------------------------------------------------------------------------


async def env_store(monkeypatch: pytest.MonkeyPatch, **metadata: str) -> EnvSecretStore:
    monkeypatch.setenv("MYAPP_DB", "db-secret")
    monkeypatch.setenv("MYAPP_", "prefix only")
    monkeypatch.setenv("OTHER_DB", "not mine")
    store = EnvSecretStore()
    await store.init(metadata)
    return store


async def test_env_prefix_filters_and_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    store = await env_store(monkeypatch, prefix="MYAPP_")
    assert await store.get("DB", {}) == {"DB": "db-secret"}
    assert await store.bulk_get({}) == {"DB": {"DB": "db-secret"}}
    with pytest.raises(NotFound):
        await store.get("MYAPP_DB", {})


async def test_env_without_prefix_holds_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    store = await env_store(monkeypatch)
    secrets = await store.bulk_get({})
    assert secrets["OTHER_DB"] == {"OTHER_DB": "not mine"}
    assert secrets["MYAPP_DB"] == {"MYAPP_DB": "db-secret"}
    monkeypatch.setenv("SET_LATER", "read at every call")
    assert await store.get("SET_LATER", {}) == {"SET_LATER": "read at every call"}


@pytest.mark.parametrize(
    "name", ["DAPR_API_TOKEN", "dapr_http_port", "MECHA_TOKEN", "APP_API_TOKEN"]
)
async def test_env_never_reveals_the_runtimes_own_variables(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "runtime only")
    store = await env_store(monkeypatch)
    with pytest.raises(NotFound):
        await store.get(name, {})
    assert name not in await store.bulk_get({})


# -- local.file ------------------------------------------------------------------------------------

DOCUMENT = {
    "plain": "p",
    "db": {"user": "admin", "pass": "pw", "port": 5432, "tls": True, "extra": None},
    "hosts": ["a", {"name": "b"}],
}


async def file_store(tmp_path: Path, document: Any = DOCUMENT, **metadata: str) -> FileSecretStore:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    store = FileSecretStore()
    await store.init({"secretsFile": str(path), **metadata})
    return store


async def test_file_single_valued_flattens_every_leaf(tmp_path: Path) -> None:
    store = await file_store(tmp_path)
    assert await store.bulk_get({}) == {
        "plain": {"plain": "p"},
        "db:user": {"db:user": "admin"},
        "db:pass": {"db:pass": "pw"},
        "db:port": {"db:port": "5432"},
        "db:tls": {"db:tls": "true"},
        "db:extra": {"db:extra": ""},
        "hosts:0": {"hosts:0": "a"},
        "hosts:1:name": {"hosts:1:name": "b"},
    }
    with pytest.raises(NotFound):
        await store.get("db", {})


async def test_file_nested_separator(tmp_path: Path) -> None:
    store = await file_store(tmp_path, nestedSeparator=".")
    assert await store.get("db.user", {}) == {"db.user": "admin"}
    assert await store.get("hosts.1.name", {}) == {"hosts.1.name": "b"}


async def test_file_multi_valued_groups_by_top_level_key(tmp_path: Path) -> None:
    store = await file_store(tmp_path, multiValued="true")
    assert await store.get("plain", {}) == {"plain": "p"}
    assert await store.get("db", {}) == {
        "user": "admin", "pass": "pw", "port": "5432", "tls": "true", "extra": ""
    }  # fmt: skip
    assert await store.get("hosts", {}) == {"0": "a", "1:name": "b"}
    assert set(await store.bulk_get({})) == {"plain", "db", "hosts"}


async def test_file_two_leaves_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadMetadata) as caught:
        await file_store(tmp_path, {"a:b": "1", "a": {"b": "2"}})
    assert caught.value.key == "secretsFile" and "a:b" in str(caught.value)


@pytest.mark.parametrize(
    ("metadata", "key"),
    [
        ({}, "secretsFile"),
        ({"secretsFile": "/nonexistent/secrets.json"}, "secretsFile"),
        ({"secretsFile": "{path}", "multiValued": "perhaps"}, "multiValued"),
    ],
)
async def test_file_bad_metadata_names_the_key(
    tmp_path: Path, metadata: dict[str, str], key: str
) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("{}", encoding="utf-8")
    resolved = {name: value.format(path=path) for name, value in metadata.items()}
    with pytest.raises(BadMetadata) as caught:
        await FileSecretStore().init(resolved)
    assert caught.value.key == key


@pytest.mark.parametrize("content", [b"not json", b'["a list"]', b"\xff\xfe"])
async def test_file_that_is_not_a_json_object_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secrets.json"
    path.write_bytes(content)
    with pytest.raises(BadMetadata) as caught:
        await FileSecretStore().init({"secretsFile": str(path)})
    assert caught.value.key == "secretsFile"
