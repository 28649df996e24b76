"""A Dapr `kind: Configuration` file (`dapr run --config`) applied to a mecha config document.

What mecha does the Dapr way is taken over: API allow and deny lists (`spec.api`), secret
scopes (`spec.secrets.scopes`), name
resolution (`spec.nameResolution`: `sqlite`'s `connectionString` is the local registry's
file; `mdns` is what the local registry does on one machine), app-to-sidecar invocation
access control (`spec.accessControl`), and metrics (always on the admin's /metrics). What
only changes what is observed (tracing, logging, features) is a warning naming the key.
The API's middleware (`spec.httpPipeline`) becomes mecha's HTTP filters in front of the API
where mecha has the filter (`middleware.http.ratelimit`: `local_ratelimit`). What would
leave the app less protected than the file asks (other middleware, the app's pipeline, mTLS)
is an error naming the file and the key: mecha refuses to run
rather than silently skip a policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.config.loader import parse_yaml, read_source
from proxy.config.reader import ConfigError, Problem

WARNED = {
    "tracing": "tracing is not done by mecha (traceparent headers are passed on): ignored",
    "logging": "mecha logs API calls with --enable-api-logging: ignored",
    "features": "preview features are Dapr's: ignored",
    "components": "component deny lists are not supported by mecha: ignored",
}
REFUSED = {
    "appHttpPipeline": "middleware pipelines are not supported by mecha yet (use mecha's "
    "HTTP filters in a mecha config)",
    "mtls": "mTLS between sidecars is not supported by mecha yet",
}
NAME_RESOLVERS = ("mdns", "sqlite")
ACCESS_ACTIONS = ("allow", "deny")


def is_dapr_configuration(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "Configuration"
        and str(document.get("apiVersion", "")).startswith("dapr.io/")
    )


def apply_configuration(document: dict[str, Any], path: Path, problems: list[Problem],
                        warnings: list[Problem]) -> None:  # fmt: skip
    """Apply the Configuration at `path` to `document` (a mecha config)."""
    try:
        source = parse_yaml(read_source(path).decode("utf-8", "replace"), str(path))
    except ConfigError as error:
        problems.extend(error.problems)
        return
    spec = source.get("spec") if isinstance(source, dict) else None
    if spec is None:
        return
    where = f"{path}: spec"
    if not isinstance(spec, dict):
        problems.append(Problem(where, "expected a mapping"))
        return
    runtime = document.setdefault("runtime", {})
    for key, value in spec.items():
        at = f"{where}.{key}"
        if key in REFUSED and value:
            problems.append(Problem(at, REFUSED[key]))
        elif key in WARNED:
            warnings.append(Problem(at, WARNED[key]))
        elif key in ("metric", "metrics"):
            _metrics(value, at, warnings)
        elif key == "secrets":
            _secrets(runtime, value, at, problems)
        elif key == "nameResolution":
            _name_resolution(runtime, value, at, problems)
        elif key == "httpPipeline":
            _http_pipeline(document, value, at, problems)
        elif key == "api":
            _api(runtime, value, at, problems)
        elif key == "accessControl":
            _access_control(runtime, value, at, problems)
        elif key not in REFUSED:
            warnings.append(Problem(at, "unknown key: ignored"))


def _metrics(value: Any, at: str, warnings: list[Problem]) -> None:
    if isinstance(value, dict) and value.get("enabled") is False:
        warnings.append(Problem(f"{at}.enabled", "mecha's metrics are always on the admin's "
                                "/metrics: ignored"))  # fmt: skip


def _secrets(runtime: dict[str, Any], value: Any, at: str, problems: list[Problem]) -> None:
    scopes = value.get("scopes") if isinstance(value, dict) else None
    if not isinstance(scopes, list):
        problems.append(Problem(f"{at}.scopes", "expected a list of secret scopes"))
        return
    converted: dict[str, Any] = {}
    for index, scope in enumerate(scopes):
        item = f"{at}.scopes[{index}]"
        if not isinstance(scope, dict) or not scope.get("storeName"):
            problems.append(Problem(item, "expected a mapping with storeName"))
            continue
        access = str(scope.get("defaultAccess", "allow")).lower()
        if access not in ACCESS_ACTIONS:
            problems.append(Problem(f"{item}.defaultAccess", f"{access!r}: expected allow or deny"))
        converted[str(scope["storeName"])] = {
            "default_access": access,
            "allowed": scope.get("allowedSecrets") or [],
            "denied": scope.get("deniedSecrets") or [],
        }
    runtime["secret_scopes"] = converted


def _name_resolution(runtime: dict[str, Any], value: Any, at: str,
                     problems: list[Problem]) -> None:  # fmt: skip
    component = value.get("component") if isinstance(value, dict) else None
    if component not in NAME_RESOLVERS:
        problems.append(Problem(f"{at}.component", f"{component!r}: mecha resolves app ids on "
                                f"one machine only ({', '.join(NAME_RESOLVERS)})"))  # fmt: skip
        return
    configuration = value.get("configuration") or {}
    if component == "sqlite" and isinstance(configuration, dict):
        connection = configuration.get("connectionString")
        if isinstance(connection, str) and connection:
            runtime.setdefault("invoke", {})["registry"] = connection


def _http_pipeline(document: dict[str, Any], value: Any, at: str,
                   problems: list[Problem]) -> None:  # fmt: skip
    """The API's middleware, by the components it names, as mecha's HTTP filters in front of
    `runtime_api`: middleware.http.ratelimit is `local_ratelimit` (a bucket of
    maxRequestsPerSecond, refilled every second: 429 past it, as Dapr's)."""
    handlers = value.get("handlers") if isinstance(value, dict) else None
    if not isinstance(handlers, list):
        problems.append(Problem(f"{at}.handlers", "expected a list of handlers"))
        return
    folders = document.get("runtime", {}).get("components_path") or []
    found = _middleware_components(folders if isinstance(folders, list) else [folders])
    filters = []
    for index, handler in enumerate(handlers):
        where = f"{at}.handlers[{index}]"
        name = handler.get("name") if isinstance(handler, dict) else None
        component = found.get(str(name))
        if component is None:
            problems.append(Problem(f"{where}.name", f"{name!r}: no middleware component of "
                                    "that name in the resources paths"))  # fmt: skip
            continue
        made = _filter_of(component, where, problems)
        if made is not None:
            filters.append(made)
    for listener in document.get("listeners") or []:
        for item in listener.get("filters") or [] if isinstance(listener, dict) else []:
            config = item.get("config") if isinstance(item, dict) else None
            if item.get("name") == "runtime_api" and not (config or {}).get("internal"):
                item.setdefault("config", {})["http_filters"] = filters


def _middleware_components(folders: list[Any]) -> dict[str, tuple[str, dict[str, Any], str]]:
    """name -> (type, metadata, file) of the middleware components in `folders`."""
    found: dict[str, tuple[str, dict[str, Any], str]] = {}
    for folder in folders:
        for file in sorted(Path(str(folder)).glob("*.y*ml")):
            try:
                documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
            except (OSError, yaml.YAMLError):
                continue  # the components' own parse reports it
            for document in documents:
                if not isinstance(document, dict) or document.get("kind") != "Component":
                    continue
                spec = document.get("spec") or {}
                kind = str(spec.get("type", "")) if isinstance(spec, dict) else ""
                if kind.startswith("middleware."):
                    items = spec.get("metadata") or []
                    metadata = {str(i.get("name")): i.get("value") for i in items
                                if isinstance(i, dict)}  # fmt: skip
                    name = str((document.get("metadata") or {}).get("name", ""))
                    found[name] = (kind, metadata, str(file))
    return found


def _filter_of(component: tuple[str, dict[str, Any], str], where: str,
               problems: list[Problem]) -> dict[str, Any] | None:  # fmt: skip
    kind, metadata, file = component
    if kind != "middleware.http.ratelimit":
        problems.append(Problem(where, f"{kind} ({file}) is not supported by mecha (supported: "
                                "middleware.http.ratelimit)"))  # fmt: skip
        return None
    rate = str(metadata.get("maxRequestsPerSecond", "")).strip()
    if not rate.isdigit() or int(rate) < 1:
        problems.append(Problem(f"{file}: spec.metadata.maxRequestsPerSecond",
                                f"{rate!r}: expected a whole number of at least 1"))  # fmt: skip
        return None
    per_second = int(rate)
    bucket = {"max_tokens": per_second, "tokens_per_fill": per_second, "fill_interval": "1s"}
    return {"name": "local_ratelimit", "config": bucket}


def _api(runtime: dict[str, Any], value: Any, at: str, problems: list[Problem]) -> None:
    """Allow and deny lists of the sidecar's APIs, as they are."""
    if not isinstance(value, dict):
        problems.append(Problem(at, "expected a mapping with allowed and/or denied"))
        return
    converted: dict[str, list[dict[str, str]]] = {}
    for key in ("allowed", "denied"):
        rules = value.get(key) or []
        if not isinstance(rules, list):
            problems.append(Problem(f"{at}.{key}", "expected a list of APIs"))
            continue
        converted[key] = [_api_rule(rule, f"{at}.{key}[{i}]", problems)
                          for i, rule in enumerate(rules)]  # fmt: skip
    runtime["api_access"] = converted


def _api_rule(rule: Any, at: str, problems: list[Problem]) -> dict[str, str]:
    if not isinstance(rule, dict) or not rule.get("name") or not rule.get("version"):
        problems.append(Problem(at, "expected a mapping with name and version"))
        return {"name": "", "version": ""}
    converted = {"name": str(rule["name"]), "version": str(rule["version"])}
    if rule.get("protocol"):
        protocol = str(rule["protocol"]).lower()
        if protocol not in ("http", "grpc"):
            problems.append(Problem(f"{at}.protocol", f"{rule['protocol']!r}: expected http or "
                                    "grpc"))  # fmt: skip
        converted["protocol"] = protocol
    return converted


def _access_control(runtime: dict[str, Any], value: Any, at: str,
                    problems: list[Problem]) -> None:  # fmt: skip
    """Dapr's policies, checked by the callee's sidecar on calls from other sidecars."""
    if not isinstance(value, dict):
        problems.append(Problem(at, "expected a mapping"))
        return
    default = str(value.get("defaultAction", "allow")).lower()
    if default not in ACCESS_ACTIONS:
        problems.append(Problem(f"{at}.defaultAction", f"{default!r}: expected allow or deny"))
    policies = []
    for index, policy in enumerate(value.get("policies") or []):
        policies.append(_policy(policy, f"{at}.policies[{index}]", problems))
    runtime["access_control"] = {"default_action": default, "policies": policies}


def _policy(policy: Any, at: str, problems: list[Problem]) -> dict[str, Any]:
    if not isinstance(policy, dict) or not policy.get("appId"):
        problems.append(Problem(at, "expected a mapping with appId"))
        return {}
    operations = []
    for index, operation in enumerate(policy.get("operations") or []):
        where = f"{at}.operations[{index}]"
        if not isinstance(operation, dict) or not str(operation.get("name", "")).startswith("/"):
            problems.append(Problem(where, "expected a mapping with a name starting with /"))
            continue
        verbs = operation.get("httpVerb") or ["*"]
        operations.append({
            "name": operation["name"], "verbs": [str(verb).upper() for verb in verbs],
            "action": _action(operation.get("action", "allow"), f"{where}.action", problems),
        })  # fmt: skip
    default = _action(policy.get("defaultAction", "allow"), f"{at}.defaultAction", problems)
    return {"app_id": str(policy["appId"]), "default_action": default, "operations": operations}


def _action(value: Any, at: str, problems: list[Problem]) -> str:
    action = str(value).lower()
    if action not in ACCESS_ACTIONS:
        problems.append(Problem(at, f"{value!r}: expected allow or deny"))
    return action
