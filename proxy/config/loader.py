"""Read a config file: YAML (duplicate keys refused), then ${VAR} / ${VAR:-default} expansion.

Expansion happens on parsed scalars, never on the raw text, so an environment value can
change a value but never the shape of the document. A scalar that is exactly one
`${...}` reference becomes an int, a float or true/false when its expansion reads as one
(`port: ${PORT:-80}` is an int) — unless it was quoted (`token: "${TOKEN}"` stays a string).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from proxy.config.reader import ConfigError, Problem

_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d*([eE][+-]?\d+)?")
_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (its wheels are): a config with thousands
of routes parses in a tenth of the time."""


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # flatten_mapping puts `<<` merged pairs first; keys written here may override those.
    written = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - written
    mapping: dict[Any, Any] = {}
    seen: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        mark = key_node.start_mark
        try:
            duplicate = key in seen  # merged pairs come first, while `seen` is empty
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key (line {mark.line + 1})", mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        if index >= merged:
            seen.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


class _Quoted(str):
    """A string that was quoted in the YAML: expansion keeps it a string (`"${PORT}"`)."""

    __slots__ = ()


def _construct_string(loader: _StrictLoader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    assert isinstance(value, str)
    return _Quoted(value) if node.style in ("'", '"') and "$" in value else value


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:str", _construct_string)


def parse_yaml(text: str, source: str = "<config>") -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"{source}: invalid YAML: {exc}")]) from None


def expand_env(document: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Expand references in every string scalar; all unset variables are reported at once."""
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    result = _expand(document, "", env, problems)
    if problems:
        raise ConfigError(problems)
    return result


def _expand(value: Any, path: str, env: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {
            key: _expand(item, f"{path}.{key}" if path else str(key), env, problems)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item, f"{path}[{i}]", env, problems) for i, item in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        return _expand_scalar(value, path, env, problems)
    return value


def _expand_scalar(text: str, path: str, env: Mapping[str, str], problems: list[Problem]) -> Any:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                problems.append(Problem(path, f"environment variable {name} is not set"))
                return ""
            return default
        return found

    expanded = _REFERENCE.sub(substitute, text)
    whole = _REFERENCE.fullmatch(text)
    if whole is None or whole.group(0) == "$$" or isinstance(text, _Quoted):
        return expanded
    return _typed_scalar(expanded)


def _typed_scalar(text: str) -> Any:
    """int, float, true/false, or the text itself (YAML 1.1's yes/no/on/off stay strings)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def read_source(path: str | Path) -> bytes:
    """A config file's bytes, or ConfigError."""
    file = Path(path)
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read {file}: {exc.strerror or exc}")]) from None


def load_document(
    path: str | Path, environ: Mapping[str, str] | None = None, source: bytes | None = None
) -> Any:
    """The expanded YAML document of a config file (or of its `source`, already read)."""
    data = read_source(path) if source is None else source
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"{path}: not UTF-8: {exc}")]) from None
    return expand_env(parse_yaml(text, str(path)), environ)
